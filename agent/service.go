package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/heartbeat"
)

// service is one registered service: its checks, its heartbeat
// subscription, and the goroutines that probe and watch over it.
type service struct {
	cfg    ServiceConfig
	id     string
	a      *Agent
	checks []*check
	bridge *bridge // nil without bridge endpoints

	lastBeat atomic.Int64 // unix nanoseconds of the last heartbeat
	sub      *nats.Subscription
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// startService runs the checks' first round, subscribes the heartbeat,
// announces the service with what the round found, and starts the checks'
// loops and the re-announce watch.
func (a *Agent) startService(ctx context.Context, cfg ServiceConfig, id string) (*service, error) {
	now := time.Now()
	s := &service{cfg: cfg, id: id, a: a}
	for _, c := range cfg.Checks {
		s.checks = append(s.checks, newCheck(c, a.m, now))
	}
	var first sync.WaitGroup
	for _, k := range s.checks {
		first.Go(func() { k.runOnce(ctx) })
	}
	first.Wait()
	if len(cfg.Bridge.Endpoints) > 0 {
		b, err := newBridge(s)
		if err == nil {
			s.bridge = b
			err = b.serve(a.nc)
		}
		if err != nil {
			s.release(ctx)
			return nil, fmt.Errorf("bridge of %s: %w", cfg.Name, err)
		}
	}
	sub, err := a.nc.Subscribe(a.cfg.Subjects.HeartbeatOf(cfg.Name, id, cfg.Scoped), s.answer)
	if err != nil {
		s.release(ctx)
		return nil, fmt.Errorf("subscribe heartbeats of %s %s: %w", cfg.Name, id, err)
	}
	s.sub = sub
	if err := a.nc.Flush(); err != nil {
		a.log.Warn("flush heartbeat subscription", "service", cfg.Name, "err", err)
	}
	s.lastBeat.Store(time.Now().UnixNano())
	if err := s.announce(ctx); err != nil {
		// The watch below announces again; discovery may not be up yet.
		a.log.Warn("announce", "service", cfg.Name, "instance_id", id, "err", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	for _, k := range s.checks {
		s.wg.Go(func() { k.run(runCtx) })
	}
	s.wg.Go(func() { s.watch(runCtx) })
	a.log.Info("service registered", "service", cfg.Name, "instance_id", id, "status", events.WorstStatus(s.results(time.Now())), "checks", len(s.checks))
	return s, nil
}

// results are the checks' results now.
func (s *service) results(now time.Time) []events.CheckResult {
	out := make([]events.CheckResult, len(s.checks))
	for i, k := range s.checks {
		out[i] = k.current(now)
	}
	return out
}

func (s *service) announceMsg() events.Announce {
	checks := s.results(time.Now())
	eps := make([]events.Endpoint, len(s.cfg.Bridge.Endpoints))
	for i, e := range s.cfg.Bridge.Endpoints {
		eps[i] = events.Endpoint{Name: e.Name}
	}
	return events.Announce{
		ID: s.id, Service: s.cfg.Name, Version: s.cfg.Version, Endpoints: eps,
		Weight: s.cfg.weight(), AZ: s.cfg.AZ, Hostname: s.a.hostname, Metadata: s.cfg.Metadata,
		Address: s.cfg.Address, Port: events.Port(s.cfg.Port), Tags: s.cfg.Tags,
		Status: events.WorstStatus(checks), Checks: fitChecks(checks, events.MaxPayload-2048), TS: time.Now().UTC(),
		Scoped: s.cfg.Scoped,
	}
}

// announce sends the announce and waits for discovery's answer.
func (s *service) announce(ctx context.Context) error {
	data, err := json.Marshal(s.announceMsg())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := s.a.nc.RequestWithContext(ctx, s.a.cfg.Subjects.Announce(s.cfg.Name), data)
	if err != nil {
		return err
	}
	if code, text, isErr := events.ReplyError(m); isErr {
		return fmt.Errorf("refused: %d %s", code, text)
	}
	return nil
}

// answer replies to a heartbeat with the worst check's status and every
// check.
func (s *service) answer(m *nats.Msg) {
	s.lastBeat.Store(time.Now().UnixNano())
	checks := s.results(time.Now())
	reply := events.HeartbeatReply{ID: s.id, Status: events.WorstStatus(checks), Checks: fitChecks(checks, events.MaxPayload-256)}
	if s.bridge != nil {
		reply.Inflight, reply.Capacity = int(s.bridge.inflight.Load()), cap(s.bridge.sem)
	}
	data, err := json.Marshal(reply)
	if err != nil {
		s.a.log.Error("encode heartbeat reply", "service", s.cfg.Name, "err", err)
		return
	}
	_ = m.Respond(data)
}

// watch announces the service again when no heartbeat came for three
// intervals (the SDK's rule: discovery lost it, or restarted empty).
func (s *service) watch(ctx context.Context) {
	iv := s.a.cfg.HeartbeatInterval
	t := time.NewTicker(iv)
	defer t.Stop()
	failed := 0 // announces in a row not taken, for the backoff (the SDK's rule)
	last := s.lastBeat.Load()
	wait := heartbeat.ReannounceAfter(iv, 0, nil)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if beat := s.lastBeat.Load(); beat != last && failed > 0 {
			failed, wait = 0, heartbeat.ReannounceAfter(iv, 0, nil) // heartbeats again
		}
		if time.Since(time.Unix(0, s.lastBeat.Load())) < wait {
			continue
		}
		err := s.announce(ctx)
		s.lastBeat.Store(time.Now().UnixNano())
		last = s.lastBeat.Load()
		if err != nil {
			failed++
			wait = heartbeat.ReannounceAfter(iv, failed, func(d time.Duration) time.Duration { return rand.N(d) })
			s.a.log.Warn("announce again", "service", s.cfg.Name, "instance_id", s.id, "next_in", wait.Round(time.Millisecond), "err", err)
			continue
		}
		s.a.log.Info("announced again: no heartbeat for 3 intervals", "service", s.cfg.Name, "instance_id", s.id)
	}
}

// stop ends the service and, with deregister, deregisters it first (a
// shutdown or a removal; an edited service keeps its registration): the
// SDK's order, so routers stop sending before the bridged requests in
// flight are finished.
func (s *service) stop(ctx context.Context, deregister bool) {
	if deregister {
		data, _ := json.Marshal(events.Deregister{ID: s.id, Service: s.cfg.Name, Reason: "shutdown"})
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if _, err := s.a.nc.RequestWithContext(dctx, s.a.cfg.Subjects.Deregister(s.cfg.Name), data); err != nil {
			s.a.log.Warn("deregister", "service", s.cfg.Name, "instance_id", s.id, "err", err)
		}
		cancel()
	}
	_ = s.sub.Unsubscribe()
	s.cancel()
	s.wg.Wait()
	s.release(ctx)
	if deregister {
		s.a.log.Info("service deregistered", "service", s.cfg.Name, "instance_id", s.id)
	}
}

// release finishes the bridged requests in flight (bounded by the
// bridge's timeout) and closes the checks' connections.
func (s *service) release(ctx context.Context) {
	if s.bridge != nil {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.bridge.timeout+time.Second)
		s.bridge.stop(bctx)
		cancel()
	}
	for _, k := range s.checks {
		k.close()
	}
}

// fitChecks keeps a message under limit bytes by cutting the longest
// outputs first, never by dropping a check (PROTOCOL v1.1).
func fitChecks(checks []events.CheckResult, limit int) []events.CheckResult {
	size := func(cs []events.CheckResult) int {
		b, _ := json.Marshal(cs)
		return len(b)
	}
	if size(checks) <= limit {
		return checks
	}
	out := slices.Clone(checks)
	for size(out) > limit {
		longest := 0
		for i := range out {
			if len(out[i].Output) > len(out[longest].Output) {
				longest = i
			}
		}
		if out[longest].Output == "" {
			break
		}
		out[longest].Output = events.CutOutput(out[longest].Output, len(out[longest].Output)/2)
	}
	return out
}
