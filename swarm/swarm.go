// Package swarm runs many protocol-speaking instances in one process, over
// a few NATS connections, to measure a region's limits: each instance
// announces (scoped, PROTOCOL v1.2), answers its heartbeats and requests,
// announces again by the SDK's rule (three intervals without a heartbeat,
// then exponential backoff with full jitter), honours a busy node's 503 and
// a discover's spread, and deregisters at the end.
package swarm

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/heartbeat"
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
}

type inst struct {
	id, service string
	silent      bool
	conn        *nats.Conn
	announce    []byte
	reply       []byte
	lastBeat    atomic.Int64 // unix nanos
	// Owned by the scheduler.
	lastAnnounce time.Time
	next         time.Time // a discover's spread: announce at
	failed       int
	wait         time.Duration
	queued       atomic.Bool
	acked        atomic.Bool
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
		ann, err := json.Marshal(a)
		if err != nil {
			return err
		}
		rep, err := json.Marshal(events.HeartbeatReply{ID: id, Status: events.Passing})
		if err != nil {
			return err
		}
		in := &inst{id: id, service: service, silent: silent, announce: ann, reply: rep, wait: heartbeat.ReannounceAfter(cfg.HeartbeatInterval, 0, nil)}
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
	connOf := map[string]*nats.Conn{}
	for _, in := range s.insts {
		c, ok := connOf[in.service]
		if !ok {
			c = conns[len(connOf)%len(conns)]
			connOf[in.service] = c
		}
		in.conn = c
	}
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
		in.next = now
	}
	g, gctx := errgroup.WithContext(ctx)
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
	spread := events.DiscoverSpread(m.Data, time.Second)
	select {
	case s.spreads <- spread:
	default: // one is pending already
	}
}

// schedule hands due instances to the announcers: first every one (at
// once), then each whose re-announce wait ran out without a heartbeat.
func (s *Swarm) schedule(ctx context.Context) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case spread := <-s.spreads:
			now := time.Now()
			for _, in := range s.insts {
				in.next = now.Add(rand.N(spread) + 1)
			}
		case <-tick.C:
		}
		now := time.Now()
		for _, in := range s.insts {
			if in.queued.Load() {
				continue
			}
			beat := time.Unix(0, in.lastBeat.Load())
			due := !in.next.IsZero() && !now.Before(in.next)
			if !due && beat.After(in.lastAnnounce) && in.failed > 0 {
				in.failed, in.wait = 0, heartbeat.ReannounceAfter(s.cfg.HeartbeatInterval, 0, nil)
			}
			if !due && !in.lastAnnounce.IsZero() && now.Sub(maxTime(beat, in.lastAnnounce)) > in.wait {
				due = true
				if in.silent && s.silenced.Load() {
					s.m.silenced.Inc()
				} else {
					s.m.unheard.Inc()
				}
			}
			if due {
				in.next = time.Time{}
				in.queued.Store(true)
				s.due <- in
			}
		}
	}
}

// announcer sends announces of due instances and records the outcome
// for the scheduler's backoff.
func (s *Swarm) announcer(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case in := <-s.due:
			ok := s.announce(ctx, in)
			// As the SDK: the wait for a heartbeat runs from the announce's
			// answer, not from when it was due (it may have queued here).
			in.lastAnnounce = time.Now()
			if ok {
				in.failed = 0
			} else {
				in.failed++
			}
			in.wait = heartbeat.ReannounceAfter(s.cfg.HeartbeatInterval, in.failed, func(d time.Duration) time.Duration { return rand.N(d) })
			in.queued.Store(false)
		}
	}
}

func (s *Swarm) announce(ctx context.Context, in *inst) bool {
	rctx, cancel := context.WithTimeout(ctx, s.cfg.HeartbeatInterval)
	defer cancel()
	m, err := in.conn.RequestWithContext(rctx, s.cfg.Subjects.Announce(in.service), in.announce)
	if err != nil {
		s.m.failed.Inc()
		return false
	}
	if code, _, isErr := events.ReplyError(m); isErr {
		if code >= 500 {
			s.m.busy.Inc()
			return false
		}
		s.cfg.Logger.Error("announce refused", "service", in.service, "code", code, "body", string(m.Data))
		return true
	}
	s.m.acked.Inc()
	s.registered(in)
	return true
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
				d, _ := json.Marshal(events.Deregister{ID: in.id, Service: in.service, Reason: "swarm stopped"})
				rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
				if _, err := in.conn.RequestWithContext(rctx, s.cfg.Subjects.Deregister(in.service), d); err == nil {
					s.m.deregistered.Inc()
				}
				rcancel()
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

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
