// Package agent registers services that do not speak NATS: for each entry
// of its config it runs the service's checks (the health package) and a
// member (package member, the SDK's instance side) that announces it with
// what the first round found, answers its heartbeats with the worst check's
// status and every check, announces again when discovery asks or loses it,
// and deregisters it on removal or shutdown. Its HTTP API lists
// the checks and takes TTL reports. services/agent is the program; the dev
// stack runs one in process.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/identity"
	"github.com/hailsd/hail/member"
)

// Errors the TTL API branches on.
var (
	ErrNotFound  = errors.New("not found")
	ErrNotTTL    = errors.New("not a ttl check")
	ErrBadReport = errors.New("bad report")
)

// Config configures an Agent.
type Config struct {
	Subjects events.Subjects
	// HeartbeatInterval is discovery's: a service announces again after
	// three without a heartbeat. Default 1s.
	HeartbeatInterval time.Duration
	Logger            *slog.Logger
	Metrics           *metrics.Set
	// Identity, when set, registers every service as its own identity
	// (PROTOCOL v1.6): it gives the service's identity and a connection
	// made as it (member.IdentityOptions with the service's secret),
	// which the agent closes when the service goes. The service's id is
	// the identity's (an entry's id must then be empty or that id), it
	// is scoped, and its bridge serves on that connection. Nil: every
	// service on the agent's own connection.
	Identity func(ctx context.Context, service string) (*nats.Conn, *identity.Identity, error)
}

// Agent runs the services of its config.
type Agent struct {
	nc       *nats.Conn
	conn     *member.Conn // every service's member side, on nc
	cfg      Config
	log      *slog.Logger
	m        *metricsSet
	hostname string

	mu       sync.Mutex // held while the services change
	ctx      context.Context
	services map[string]*service // by name
	// ids are the ids generated for services without one, by name: a
	// generated id lasts as long as the agent process.
	ids   map[string]string
	count atomic.Int64 // len(services), for the gauge without the lock
}

// New makes an agent on nc; Run starts it.
func New(nc *nats.Conn, cfg Config) *Agent {
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	a := &Agent{nc: nc, conn: member.NewConn(nc, cfg.Subjects, cfg.HeartbeatInterval), cfg: cfg, log: cfg.Logger.With("component", "agent"), services: map[string]*service{}, ids: map[string]string{}}
	a.hostname, _ = os.Hostname()
	a.m = newMetrics(cfg.Metrics, a.Len)
	return a
}

// Len is the number of services registered.
func (a *Agent) Len() int { return int(a.count.Load()) }

// Run registers svcs and keeps them until ctx ends; then it deregisters
// every one and returns once their goroutines have stopped.
func (a *Agent) Run(ctx context.Context, svcs []ServiceConfig) error {
	a.mu.Lock()
	a.ctx = ctx
	a.mu.Unlock()
	if err := a.Apply(svcs); err != nil {
		a.shutdown()
		return err
	}
	<-ctx.Done()
	a.shutdown()
	return nil
}

// Apply makes svcs the registered services: a new entry registers, a
// removed one deregisters, an entry whose fields changed is announced
// again with the same id and its checks restarted (a changed id is a
// removal and an addition). An invalid list is refused whole and the
// running services stay.
func (a *Agent) Apply(svcs []ServiceConfig) error {
	if err := ValidateServices(svcs); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ctx == nil {
		return errors.New("agent: Apply before Run")
	}
	ctx := a.ctx
	want := make(map[string]ServiceConfig, len(svcs))
	for _, c := range svcs {
		want[c.Name] = c
	}
	for name, s := range a.services {
		c, keep := want[name]
		switch {
		case !keep || c.ID != s.cfg.ID:
			s.stop(ctx, true)
			delete(a.services, name)
		case !reflect.DeepEqual(c, s.cfg):
			s.stop(ctx, false)
			delete(a.services, name)
		}
	}
	var errs []error
	for _, c := range svcs {
		if a.services[c.Name] != nil {
			continue
		}
		id := c.ID
		if id == "" {
			if a.ids[c.Name] == "" {
				a.ids[c.Name] = uuid.NewString()
			}
			id = a.ids[c.Name]
		}
		s, err := a.startService(ctx, c, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		a.services[c.Name] = s
	}
	a.count.Store(int64(len(a.services)))
	return errors.Join(errs...)
}

// shutdown deregisters every service.
func (a *Agent) shutdown() {
	a.mu.Lock()
	defer a.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range a.services {
		wg.Go(func() { s.stop(a.ctx, true) })
	}
	wg.Wait()
	clear(a.services)
	a.count.Store(0)
}

// Checks are every service's check results now, by service name.
func (a *Agent) Checks() map[string][]events.CheckResult {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	out := make(map[string][]events.CheckResult, len(a.services))
	for name, s := range a.services {
		out[name] = s.results(now)
	}
	return out
}

// ID is the instance id of service, if registered.
func (a *Agent) ID(service string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.services[service]
	if !ok {
		return "", false
	}
	return s.id, true
}

// Err is discovery's refusal of service's announce (a 4xx, wrapping
// member.ErrRefused), or nil; a refused service is announced no more until
// its entry changes.
func (a *Agent) Err(service string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s, ok := a.services[service]; ok {
		return s.member.Err()
	}
	return nil
}

// Report takes a TTL check's report: pass, warn or fail, with output.
func (a *Agent) Report(service, name, report, output string) (events.CheckResult, error) {
	a.mu.Lock()
	s := a.services[service]
	a.mu.Unlock()
	if s == nil {
		return events.CheckResult{}, fmt.Errorf("%w: no service %q", ErrNotFound, service)
	}
	for _, k := range s.checks {
		if k.cfg.Name != name {
			continue
		}
		if k.ttl == nil {
			return events.CheckResult{}, fmt.Errorf("%w: check %q of %q is %s", ErrNotTTL, name, service, k.kind)
		}
		now := time.Now()
		if err := k.report(report, events.CutOutput(output, events.MaxCheckOutput), now); err != nil {
			return events.CheckResult{}, fmt.Errorf("%w: %w", ErrBadReport, err)
		}
		return k.current(now), nil
	}
	return events.CheckResult{}, fmt.Errorf("%w: service %q has no check %q", ErrNotFound, service, name)
}
