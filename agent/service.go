package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/member"
)

// service is one registered service: its checks, its member (the
// protocol's instance side, shared with the SDK), and the goroutines that
// probe it.
type service struct {
	cfg    ServiceConfig
	id     string
	a      *Agent
	checks []*check
	bridge *bridge // nil without bridge endpoints

	member *member.Member
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// nc is the service's own connection when it is an identity
	// (Config.Identity), closed when it stops; nil on the agent's.
	nc *nats.Conn
	// scoped: the entry's, or an identity's (always scoped).
	scoped bool
}

// startService runs the checks' first round, then joins the service as a
// member, which announces it with what the round found, and starts the
// checks' loops.
func (a *Agent) startService(ctx context.Context, cfg ServiceConfig, id string) (*service, error) {
	now := time.Now()
	s := &service{cfg: cfg, id: id, a: a, scoped: cfg.Scoped}
	nc, conn := a.nc, a.conn
	if a.cfg.Identity != nil {
		var err error
		if nc, conn, err = s.identity(ctx); err != nil {
			return nil, err
		}
	}
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
			err = b.serve(nc)
		}
		if err != nil {
			s.release(ctx)
			s.closeConn()
			return nil, fmt.Errorf("bridge of %s: %w", cfg.Name, err)
		}
	}
	m, err := conn.Join(member.Config{
		Service: cfg.Name, ID: s.id, Scoped: s.scoped,
		Announce: s.announceMsg, Report: s.report, Logger: a.log,
	})
	if err != nil {
		s.release(ctx)
		s.closeConn()
		return nil, fmt.Errorf("join %s %s: %w", cfg.Name, s.id, err)
	}
	s.member = m
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	for _, k := range s.checks {
		s.wg.Go(func() { k.run(runCtx) })
	}
	a.log.Info("service joined", "service", cfg.Name, "instance_id", s.id, "status", events.WorstStatus(s.results(time.Now())), "checks", len(s.checks))
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
		Scoped: s.scoped,
	}
}

// report answers a heartbeat with the worst check's status and every
// check, and the bridge's load.
func (s *service) report() events.HeartbeatReply {
	checks := s.results(time.Now())
	reply := events.HeartbeatReply{Status: events.WorstStatus(checks), Checks: fitChecks(checks, events.MaxPayload-256)}
	if s.bridge != nil {
		reply.Inflight, reply.Capacity = int(s.bridge.inflight.Load()), cap(s.bridge.sem)
	}
	return reply
}

// stop ends the service and, with deregister, deregisters it first (a
// shutdown or a removal; an edited service keeps its registration): the
// SDK's order, so routers stop sending before the bridged requests in
// flight are finished.
func (s *service) stop(ctx context.Context, deregister bool) {
	ctx = context.WithoutCancel(ctx)
	// The checks stop and the bridge finishes what it holds while the
	// heartbeats are still answered.
	wind := func(ctx context.Context) error {
		s.cancel()
		s.wg.Wait()
		s.release(ctx)
		return nil
	}
	var err error
	if deregister {
		err = s.member.Leave(ctx, wind)
	} else {
		err = errors.Join(wind(ctx), s.member.Close())
	}
	if err != nil {
		s.a.log.Warn("leave", "service", s.cfg.Name, "instance_id", s.id, "err", err)
	}
	s.closeConn()
	if deregister {
		s.a.log.Info("service deregistered", "service", s.cfg.Name, "instance_id", s.id)
	}
}

// identity connects the service as its own identity (Config.Identity):
// its id is the identity's, and it is scoped.
func (s *service) identity(ctx context.Context) (*nats.Conn, *member.Conn, error) {
	nc, id, err := s.a.cfg.Identity(ctx, s.cfg.Name)
	if err != nil {
		return nil, nil, fmt.Errorf("identity of %s: %w", s.cfg.Name, err)
	}
	if s.cfg.ID != "" && s.cfg.ID != id.ID() {
		nc.Close()
		return nil, nil, fmt.Errorf("identity of %s: its id is %s, its key's, not the entry's %s; leave id empty", s.cfg.Name, id.ID(), s.cfg.ID)
	}
	s.id, s.scoped, s.nc = id.ID(), true, nc
	return nc, member.NewIdentityConn(nc, s.a.cfg.Subjects, s.a.cfg.HeartbeatInterval, s.cfg.Name, s.id), nil
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

// closeConn closes the service's own connection, if it has one.
func (s *service) closeConn() {
	if s.nc != nil {
		s.nc.Close()
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
