// Package swarm runs many protocol-speaking instances in one process, over
// a few NATS connections, to measure a region's limits: each instance
// announces (scoped, PROTOCOL v1.2), answers its heartbeats and requests,
// and announces again by the SDK's rules, and deregisters at the end. It
// cannot afford the SDK's goroutine per instance: one scheduler runs
// package member's decisions (member.State per instance) and a pool
// announces through member.Conn, the one announce path.
package swarm

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/member"
)

// Config is one swarm.
type Config struct {
	// Instances in all; Services they are spread over, named
	// <Name>-<n>; Silent more in service <Name>-silent, which answer
	// until Silence is called.
	Instances, Services, Silent int
	Name                        string
	Subjects                    events.Subjects
	// HeartbeatInterval is discovery's, for the re-announce rule.
	HeartbeatInterval time.Duration
	// InFlight bounds the announces waiting for an answer at once.
	InFlight int
	// Deregister the instances when the swarm stops (bounded by
	// DeregisterTimeout).
	Deregister        bool
	DeregisterTimeout time.Duration
	Logger            *slog.Logger
	Metrics           *metrics.Set
}

// Swarm is the running instances.
type Swarm struct {
	cfg   Config
	conns []*nats.Conn
	insts []*inst
	byID  map[string]*inst
	due   chan *inst
	// spreads carries a discover's spread to the scheduler.
	spreads chan time.Duration
	m       swarmMetrics
	// silenced is set once Silence was called.
	silenced atomic.Bool
	// reconnects counts each connection's reconnects: an instance whose
	// connection came back since it last announced announces again with
	// its new conn (PROTOCOL v1.4).
	reconnects []atomic.Uint64
}

type inst struct {
	id, service string
	silent      bool
	conn        *nats.Conn
	connIdx     int          // conn's index in Swarm.conns
	member      *member.Conn // conn's member side
	reconnects  uint64       // the conn's reconnects as of its state; the scheduler's
	announce    events.Announce
	reply       []byte
	lastBeat    atomic.Int64 // unix nanos
	// state is the scheduler's while queued is false, the announcer's
	// while it is true.
	state  member.State
	queued atomic.Bool
	acked  atomic.Bool
}

type swarmMetrics struct {
	acked, busy, failed, beats, served, deregistered *metrics.Counter
	// Announces that fell due for want of a heartbeat: unheard, or
	// silenced (the swarm silenced the instance).
	unheard, silenced *metrics.Counter
	registered        atomic.Int64
}

// New makes the instances; conns carry them, services spread over the
// connections in turn.
func New(conns []*nats.Conn, cfg Config) (*Swarm, error) {
	if len(conns) == 0 || cfg.Instances < 0 || cfg.Services < 1 || cfg.Name == "" {
		return nil, fmt.Errorf("swarm: need connections, a name, services >= 1 and instances >= 0")
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = time.Second
	}
	if cfg.InFlight <= 0 {
		cfg.InFlight = 256
	}
	if cfg.DeregisterTimeout <= 0 {
		cfg.DeregisterTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	s := &Swarm{cfg: cfg, conns: conns, byID: map[string]*inst{}}
	set := cfg.Metrics
	s.m = swarmMetrics{
		acked:        set.GetOrCreateCounter(`hail_swarm_announces_total{outcome="ok"}`),
		busy:         set.GetOrCreateCounter(`hail_swarm_announces_total{outcome="busy"}`),
		failed:       set.GetOrCreateCounter(`hail_swarm_announces_total{outcome="unanswered"}`),
		beats:        set.GetOrCreateCounter("hail_swarm_heartbeats_answered_total"),
		served:       set.GetOrCreateCounter("hail_swarm_requests_total"),
		deregistered: set.GetOrCreateCounter("hail_swarm_deregistered_total"),
		unheard:      set.GetOrCreateCounter(`hail_swarm_announces_due_total{why="unheard"}`),
		silenced:     set.GetOrCreateCounter(`hail_swarm_announces_due_total{why="silenced"}`),
	}
	set.GetOrCreateGauge("hail_swarm_registered", func() float64 { return float64(s.m.registered.Load()) })
	set.GetOrCreateGauge("hail_swarm_instances", func() float64 { return float64(len(s.insts)) })
	add := func(service string, silent bool) error {
		id := uuid.Must(uuid.NewV7()).String()
		a := events.Announce{ID: id, Service: service, Endpoints: []events.Endpoint{{Name: "say"}}, Weight: events.DefaultWeight, Scoped: true}
		rep, err := json.Marshal(events.HeartbeatReply{ID: id, Status: events.Passing})
		if err != nil {
			return err
		}
		in := &inst{id: id, service: service, silent: silent, announce: a, reply: rep}
		s.insts = append(s.insts, in)
		s.byID[id] = in
		return nil
	}
	for i := range cfg.Instances {
		if err := add(fmt.Sprintf("%s-%d", cfg.Name, i%cfg.Services), false); err != nil {
			return nil, err
		}
	}
	for range cfg.Silent {
		if err := add(cfg.Name+"-silent", true); err != nil {
			return nil, err
		}
	}
	// A service's instances share its connection: one subscription per
	// service for its heartbeats and one for its requests.
	members := make([]*member.Conn, len(conns))
	for i, c := range conns {
		members[i] = member.NewConn(c, cfg.Subjects, cfg.HeartbeatInterval)
	}
	connOf := map[string]int{}
	for _, in := range s.insts {
		c, ok := connOf[in.service]
		if !ok {
			c = len(connOf) % len(conns)
			connOf[in.service] = c
		}
		in.conn, in.connIdx, in.member = conns[c], c, members[c]
	}
	s.reconnects = make([]atomic.Uint64, len(conns))
	s.due = make(chan *inst, len(s.insts))
	s.spreads = make(chan time.Duration, 1)
	return s, nil
}

// Silence makes the silent instances stop answering heartbeats (they
// still serve requests, as a hung process's socket might).
func (s *Swarm) Silence() { s.silenced.Store(true) }

// Registered is how many instances discovery has acknowledged or
// heartbeated.
func (s *Swarm) Registered() int { return int(s.m.registered.Load()) }

// Run subscribes, announces every instance, and keeps them by the SDK's
// rule until ctx ends; then deregisters them if told to.
func (s *Swarm) Run(ctx context.Context) error {
	services := map[string]*nats.Conn{}
	for _, in := range s.insts {
		services[in.service] = in.conn
	}
	var subs []*nats.Subscription
	defer func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
	}()
	for svc, c := range services {
		hb, err := c.Subscribe(s.cfg.Subjects.HeartbeatOf(svc, "*", true), s.beat)
		if err != nil {
			return fmt.Errorf("subscribe heartbeats of %s: %w", svc, err)
		}
		req, err := c.Subscribe(s.cfg.Subjects.InstOf(svc, "*", "*", true), s.serve)
		if err != nil {
			return fmt.Errorf("subscribe requests of %s: %w", svc, err)
		}
		for _, sub := range []*nats.Subscription{hb, req} {
			if err := sub.SetPendingLimits(-1, -1); err != nil {
				return err
			}
		}
		subs = append(subs, hb, req)
	}
	// One subscription hears a discover for the whole swarm.
	d, err := s.conns[0].Subscribe(s.cfg.Subjects.Discover(), s.discover)
	if err != nil {
		return fmt.Errorf("subscribe discover: %w", err)
	}
	subs = append(subs, d)
	for _, c := range s.conns {
		if err := c.Flush(); err != nil {
			return err
		}
	}
	now := time.Now()
	for _, in := range s.insts {
		in.state = member.Begin(now)
	}
	g, gctx := errgroup.WithContext(ctx)
	for i, c := range s.conns {
		ch := c.StatusChanged(nats.CONNECTED)
		context.AfterFunc(gctx, func() { c.RemoveStatusListener(ch) })
		g.Go(func() error {
			for range ch {
				s.reconnects[i].Add(1)
			}
			return nil
		})
	}
	for range s.cfg.InFlight {
		g.Go(func() error { s.announcer(gctx); return nil })
	}
	g.Go(func() error { s.schedule(gctx); return nil })
	err = g.Wait()
	if s.cfg.Deregister {
		s.deregisterAll()
	}
	return err
}

// beat answers hail.hb.<service>.<id>.
func (s *Swarm) beat(m *nats.Msg) {
	in := s.byID[m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]]
	if in == nil || (in.silent && s.silenced.Load()) {
		return
	}
	in.lastBeat.Store(time.Now().UnixNano())
	// A heartbeat is discovery's word that it has the instance, even when
	// the announce's answer was lost to a timeout.
	s.registered(in)
	if m.Respond(in.reply) == nil {
		s.m.beats.Inc()
	}
}

// serve echoes a request on hail.inst.<service>.<id>.<endpoint>.
func (s *Swarm) serve(m *nats.Msg) {
	if m.Respond(m.Data) == nil {
		s.m.served.Inc()
	}
}

// discover makes every instance announce again at a random point within
// the spread the node asks for.
func (s *Swarm) discover(m *nats.Msg) {
	spread := member.Spread(m.Data, s.cfg.HeartbeatInterval)
	select {
	case s.spreads <- spread:
	default: // one is pending already
	}
}

// schedule hands due instances to the announcers: first every one (at
// once), then each whose state says so (member.Due): a discover asked, or
// no heartbeat came, or an announce not taken is tried again.
func (s *Swarm) schedule(ctx context.Context) {
	iv := s.cfg.HeartbeatInterval
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var spread time.Duration
		asked := false
		select {
		case <-ctx.Done():
			return
		case spread = <-s.spreads:
			asked = true
		case <-tick.C:
		}
		now := time.Now()
		for _, in := range s.insts {
			if in.queued.Load() {
				continue // being announced
			}
			if asked {
				in.state = member.Discovered(in.state, now, spread, member.Jitter)
			}
			if r := s.reconnects[in.connIdx].Load(); r != in.reconnects {
				in.reconnects = r
				in.state = member.Changed(in.state, now)
			}
			if beat := in.lastBeat.Load(); beat != 0 {
				in.state = member.Beat(in.state, time.Unix(0, beat), iv)
			}
			if !member.Due(in.state, now) {
				continue
			}
			if member.Unheard(in.state, now) {
				if in.silent && s.silenced.Load() {
					s.m.silenced.Inc()
				} else {
					s.m.unheard.Inc()
				}
			}
			in.queued.Store(true)
			s.due <- in
		}
	}
}

// announcer sends announces of due instances and records the outcome in
// their state.
func (s *Swarm) announcer(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case in := <-s.due:
			o := in.member.Announce(ctx, in.announce)
			switch o.Kind {
			case member.Taken:
				s.m.acked.Inc()
				s.registered(in)
			case member.Busy:
				s.m.busy.Inc()
			case member.Unanswered:
				s.m.failed.Inc()
			case member.Refused:
				s.cfg.Logger.Error("announce refused", "service", in.service, "instance_id", in.id, "err", o.Err)
			}
			// As the SDK: the wait for a heartbeat runs from the announce's
			// answer, not from when it was due (it may have queued here).
			in.state = member.Announced(in.state, o, time.Now(), s.cfg.HeartbeatInterval, member.Jitter)
			in.queued.Store(false)
		}
	}
}

// registered counts in once: its announce was answered, or it was
// heartbeated.
func (s *Swarm) registered(in *inst) {
	if in.acked.CompareAndSwap(false, true) {
		s.m.registered.Add(1)
	}
}

// deregisterAll deregisters every instance, InFlight at a time, within
// DeregisterTimeout.
func (s *Swarm) deregisterAll() {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DeregisterTimeout)
	defer cancel()
	work := make(chan *inst)
	var wg sync.WaitGroup
	for range s.cfg.InFlight {
		wg.Go(func() {
			for in := range work {
				if in.member.Deregister(ctx, in.service, in.id, "swarm stopped") == nil {
					s.m.deregistered.Inc()
				}
			}
		})
	}
	for _, in := range s.insts {
		select {
		case work <- in:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
}
