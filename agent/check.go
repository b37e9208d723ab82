package agent

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/health"
)

type prober interface {
	Probe(context.Context) health.Result
}

// check is one running check of a service: its probe (none for ttl), the
// judge's state and the result as last seen.
type check struct {
	cfg   CheckConfig
	kind  string
	probe prober
	ttl   *health.TTL
	m     *metricsSet

	mu     sync.Mutex
	state  health.State
	result events.CheckResult
}

func newCheck(c CheckConfig, m *metricsSet, now time.Time) *check {
	k := &check{cfg: c, kind: c.Kind(), m: m, state: health.Initial()}
	switch k.kind {
	case events.CheckHTTP:
		k.probe = health.NewHTTP(c.HTTP, c.Method, c.Header, c.TLSSkipVerify)
	case events.CheckTCP:
		k.probe = health.TCP{Addr: c.TCP}
	case events.CheckGRPC:
		k.probe = health.NewGRPC(c.GRPC, c.GRPCService, c.GRPCUseTLS, c.TLSSkipVerify)
	case events.CheckScript:
		k.probe = health.Script{Args: c.Args}
	case events.CheckTTL:
		k.ttl = health.NewTTL(c.TTL)
	}
	// Critical until its first result.
	k.result = events.CheckResult{Name: c.Name, Kind: k.kind, Status: events.Critical, Output: "not run yet", Since: now.UTC()}
	if k.ttl != nil {
		k.result.Output = k.ttl.Result(now).Output
	}
	return k
}

// runOnce probes once and judges the result.
func (k *check) runOnce(ctx context.Context) {
	if k.probe == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, k.cfg.timeout())
	defer cancel()
	start := time.Now()
	r := k.probe.Probe(ctx)
	if ctx.Err() != nil && context.Cause(ctx) == context.Canceled {
		return // stopped, not a result
	}
	k.m.observe(k.kind, r.Status, time.Since(start))
	k.mu.Lock()
	defer k.mu.Unlock()
	k.state = health.Judge(k.state, r.Status, k.cfg.Thresholds)
	k.set(k.state.Status, r.Output, time.Now())
}

// set records a status and output; since moves only with the status.
// Caller holds mu.
func (k *check) set(s events.Status, output string, now time.Time) {
	if s != k.result.Status {
		k.result.Since = now.UTC()
	}
	k.result.Status, k.result.Output = s, output
}

// run probes every interval until ctx ends, starting after a random part
// of the interval so that a hundred checks do not fire at once.
func (k *check) run(ctx context.Context) {
	if k.probe == nil {
		return
	}
	iv := k.cfg.Interval
	first := time.NewTimer(rand.N(iv))
	defer first.Stop()
	select {
	case <-ctx.Done():
		return
	case <-first.C:
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		k.runOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// report takes a TTL report.
func (k *check) report(report, output string, now time.Time) error {
	if err := k.ttl.Report(report, output, now); err != nil {
		return err
	}
	k.m.observe(k.kind, k.ttl.Result(now).Status, 0)
	return nil
}

// current is the check's result now (a TTL check's may have expired).
func (k *check) current(now time.Time) events.CheckResult {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ttl != nil {
		r := k.ttl.Result(now)
		k.set(r.Status, r.Output, now)
	}
	return k.result
}

func (k *check) close() {
	if c, ok := k.probe.(interface{ Close() }); ok {
		c.Close()
	}
}
