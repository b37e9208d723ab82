// Package swarm runs many protocol-speaking instances in one process, over
// a few NATS connections, to measure a region's limits: each instance
// announces (scoped, PROTOCOL v1.2), answers its heartbeats and requests,
// and announces again by the SDK's rules, and deregisters at the end. It
// cannot afford the SDK's goroutine per instance: one scheduler runs
// package member's decisions (member.State per instance) and a pool
// announces through member.Conn, the one announce path.
//
// In its V1 mode the instances are instead clients written from PROTOCOL
// v1 alone (v1.go): no backoff, no spread, no answer read, no conn, so
// that a region can be measured against clients that are not hail's SDK.
package swarm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
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
	// until Silence is called. The silent ones announce first, so that
	// they can be silenced while the others are still registering.
	Instances, Services, Silent int
	Name                        string
	Subjects                    events.Subjects
	// HeartbeatInterval is discovery's, for the re-announce rule.
	HeartbeatInterval time.Duration
	// InFlight bounds the announces waiting for an answer at once (not
	// in V1 mode, where each instance is a client of its own).
	InFlight int
	// V1: every instance behaves as a client written from PROTOCOL v1
	// alone (v1.go): it announces once, at once when a hail.discover
	// asks, and again after 3 heartbeat intervals without a heartbeat,
	// whatever discovery answered; it sends no conn (v1.4) and does not
	// announce again after a reconnect. Its subjects stay scoped (v1.2),
	// so that a heartbeat costs the same in both modes.
	V1 bool
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
	// v1Inboxes are the connections' inbox prefixes for V1 answers.
	v1Inboxes []string
	// silence serializes Silence and Unsilence.
	silence sync.Mutex
	// refusedOnce: a V1 instance's refusal is logged once (it is sent
	// again anyway).
	refusedOnce atomic.Bool
	// reconnects counts each connection's reconnects: an instance whose
	// connection came back since it last announced announces again with
	// its new conn (PROTOCOL v1.4).
	reconnects []atomic.Uint64
}

type inst struct {
	id, service string
	silent      bool
	// silenced: a silent instance no longer answers heartbeats.
	silenced   atomic.Bool
	conn       *nats.Conn
	connIdx    int          // conn's index in Swarm.conns
	member     *member.Conn // conn's member side
	reconnects uint64       // the conn's reconnects as of its state; the scheduler's
	announce   events.Announce
	reply      []byte
	lastBeat   atomic.Int64 // unix nanos
	// state is the scheduler's while queued is false, the announcer's
	// while it is true.
	state  member.State
	queued atomic.Bool
	acked  atomic.Bool
	// V1 mode: the client's state (the scheduler's), its announce as
	// sent (no conn) and the reply subject its answers come back on.
	v1      v1State
	v1Data  []byte
	v1Reply string
}

type swarmMetrics struct {
	// sent counts every announce sent; acked, busy, failed and refused
	// their outcomes as read (a V1 announce unanswered is sent and
	// nothing else).
	sent, acked, busy, failed, refused, beats, served, deregistered *metrics.Counter
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
		sent:         set.GetOrCreateCounter("hail_swarm_announces_sent_total"),
		acked:        set.GetOrCreateCounter(`hail_swarm_announces_total{outcome="ok"}`),
		busy:         set.GetOrCreateCounter(`hail_swarm_announces_total{outcome="busy"}`),
		failed:       set.GetOrCreateCounter(`hail_swarm_announces_total{outcome="unanswered"}`),
		refused:      set.GetOrCreateCounter(`hail_swarm_announces_total{outcome="refused"}`),
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
	for range cfg.Silent {
		if err := add(cfg.Name+"-silent", true); err != nil {
			return nil, err
		}
	}
	for i := range cfg.Instances {
		if err := add(fmt.Sprintf("%s-%d", cfg.Name, i%cfg.Services), false); err != nil {
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
	inboxes := make([]string, len(conns))
	for i, c := range conns {
		inboxes[i] = c.NewInbox()
	}
	for i, in := range s.insts {
		c, ok := connOf[in.service]
		if !ok {
			c = len(connOf) % len(conns)
			connOf[in.service] = c
		}
		in.conn, in.connIdx, in.member = conns[c], c, members[c]
		if cfg.V1 {
			data, err := json.Marshal(in.announce)
			if err != nil {
				return nil, err
			}
			// The answer comes back on the connection's inbox, with the
			// instance's index as its last token: one subscription per
			// connection, and no goroutine waits for it.
			in.v1Data, in.v1Reply = data, inboxes[c]+"."+strconv.Itoa(i)
		}
	}
	s.v1Inboxes = inboxes
	s.reconnects = make([]atomic.Uint64, len(conns))
	s.due = make(chan *inst, len(s.insts))
	s.spreads = make(chan time.Duration, 1)
	return s, nil
}

// Silence makes up to n silent instances, registered and not yet
// silenced, stop answering heartbeats (they still serve requests, as a
// hung process's socket might), and returns their ids; n <= 0 silences
// every silent instance, registered or not.
func (s *Swarm) Silence(n int) []string {
	s.silence.Lock()
	defer s.silence.Unlock()
	var ids []string
	for _, in := range s.insts {
		if n > 0 && len(ids) == n {
			break
		}
		if !in.silent || in.silenced.Load() || (n > 0 && !in.acked.Load()) {
			continue
		}
		in.silenced.Store(true)
		ids = append(ids, in.id)
	}
	return ids
}

// Unsilence makes every silenced instance answer again.
func (s *Swarm) Unsilence() {
	s.silence.Lock()
	defer s.silence.Unlock()
	for _, in := range s.insts {
		in.silenced.Store(false)
	}
}

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
	if s.cfg.V1 {
		for i, c := range s.conns {
			sub, err := c.Subscribe(s.v1Inboxes[i]+".*", s.v1Answer)
			if err != nil {
				return fmt.Errorf("subscribe announce answers: %w", err)
			}
			if err := sub.SetPendingLimits(-1, -1); err != nil {
				return err
			}
			subs = append(subs, sub)
		}
	}
	for _, c := range s.conns {
		if err := c.Flush(); err != nil {
			return err
		}
	}
	now := time.Now()
	for _, in := range s.insts {
		in.state, in.v1 = member.Begin(now), v1Begin(now)
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
	if !s.cfg.V1 {
		for range s.cfg.InFlight {
			g.Go(func() error { s.announcer(gctx); return nil })
		}
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
	if in == nil || in.silenced.Load() {
		return
	}
	in.lastBeat.Store(time.Now().UnixNano())
	// A heartbeat is discovery's word that it has the instance, even when
	// the announce's answer was lost to a timeout; one marked queued
	// says only that its announce waits its turn.
	if !in.acked.Load() && !queuedBeat(m.Data) {
		s.registered(in)
	}
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
// the spread the node asks for (at once in V1 mode).
func (s *Swarm) discover(m *nats.Msg) {
	spread := member.Spread(m.Data, s.cfg.HeartbeatInterval)
	select {
	case s.spreads <- spread:
	default: // one is pending already
	}
}

// schedule hands due instances to the announcers: first every one (at
// once), then each whose state says so (member.Due): a discover asked, or
// no heartbeat came, or an announce not taken is tried again. It looks
// at every instance every scanEvery, and at once on a discover.
func (s *Swarm) schedule(ctx context.Context) {
	iv := s.cfg.HeartbeatInterval
	tick := time.NewTicker(scanEvery)
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
		if s.cfg.V1 {
			s.scheduleV1(now, asked)
			continue
		}
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
				s.countUnheard(in)
			}
			in.queued.Store(true)
			s.due <- in
		}
	}
}

// scanEvery is how often the scheduler looks at every instance: an
// instance falls due up to this much after the moment its rule names (a
// v1 client's re-announce 3.0-3.1 s after its last heartbeat). Every
// 50 ms, the scan was a quarter of the swarm's CPU at 25,000 instances
// (pprof), on the two cores the region under test shares.
const scanEvery = 100 * time.Millisecond

// scheduleV1 sends the announce of every V1 instance due at now, without
// waiting for answers (v1Answer reads them, for the counts only).
func (s *Swarm) scheduleV1(now time.Time, asked bool) {
	iv := s.cfg.HeartbeatInterval
	for _, in := range s.insts {
		if asked {
			in.v1 = v1Discovered(in.v1)
		}
		if beat := in.lastBeat.Load(); beat != 0 {
			in.v1 = v1Beat(in.v1, time.Unix(0, beat), iv)
		}
		if !v1Due(in.v1, now) {
			continue
		}
		if v1Unheard(in.v1, now) {
			s.countUnheard(in)
		}
		s.m.sent.Inc()
		if err := in.conn.PublishRequest(s.cfg.Subjects.Announce(in.service), in.v1Reply, in.v1Data); err != nil {
			s.m.failed.Inc()
		}
		in.v1 = v1Announced(in.v1, now, iv)
	}
}

// v1Answer reads discovery's answer to a V1 announce, for the counts: a V1
// client does not act on it.
func (s *Swarm) v1Answer(m *nats.Msg) {
	i, err := strconv.Atoi(m.Subject[strings.LastIndexByte(m.Subject, '.')+1:])
	if err != nil || i < 0 || i >= len(s.insts) {
		return
	}
	in := s.insts[i]
	// The server's own no-responders status (no discovery listening) is
	// what a request would have returned as nats.ErrNoResponders.
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		s.m.failed.Inc()
		return
	}
	switch o := member.Classify(m, nil); o.Kind {
	case member.Taken:
		s.m.acked.Inc()
		s.registered(in)
	case member.Refused:
		s.m.refused.Inc()
		if s.refusedOnce.CompareAndSwap(false, true) {
			s.cfg.Logger.Error("announce refused (logged once)", "service", in.service, "instance_id", in.id, "err", o.Err)
		}
	default:
		s.m.busy.Inc()
	}
}

// countUnheard counts an announce due for want of a heartbeat: silenced
// instances apart.
func (s *Swarm) countUnheard(in *inst) {
	if in.silenced.Load() {
		s.m.silenced.Inc()
	} else {
		s.m.unheard.Inc()
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
			s.m.sent.Inc()
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
				s.m.refused.Inc()
				s.cfg.Logger.Error("announce refused", "service", in.service, "instance_id", in.id, "err", o.Err)
			}
			// As the SDK: the wait for a heartbeat runs from the announce's
			// answer, not from when it was due (it may have queued here).
			in.state = member.Announced(in.state, o, time.Now(), s.cfg.HeartbeatInterval, member.Jitter)
			in.queued.Store(false)
		}
	}
}

// queuedBeat says whether a heartbeat is one of a node whose admission
// queue holds the instance's announce (events.Heartbeat.Queued). The
// swarm shares the machine with the region it measures, and tens of
// thousands of instances wait at once in a v1 burst: it looks for the
// bytes encoding/json writes for the field rather than decode every beat.
func queuedBeat(data []byte) bool { return bytes.Contains(data, []byte(`"queued":true`)) }

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
