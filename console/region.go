package console

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/registry"
)

// RegionConfig configures a Region.
type RegionConfig struct {
	Subjects events.Subjects
	Logger   *slog.Logger
	// Metrics counts the page's writes and refusals
	// (hail_admin_writes_total{outcome}) and its followers' watches made
	// again.
	Metrics *metrics.Set
	// RTTWait bounds how long a view waits for the discovery nodes'
	// heartbeat RTTs; default 250ms.
	RTTWait time.Duration
	// Registry, Nodes and Routes are the program's followers of
	// hail_instances, hail_nodes and hail_config's routes, shared with its
	// discovery node (or router) and run by their owner; nil: the region
	// makes and runs its own.
	Registry *registry.Follower
	Nodes    *registry.Nodes
	Routes   *registry.Routes
	// TrafficStep is the resolution of the routers' traffic kept for the
	// page, 180 steps of it (15 minutes at the default 5s).
	TrafficStep time.Duration
	// HistoryWindow is how much health history the page draws; default
	// an hour.
	HistoryWindow time.Duration
	// Admin is the connection the page deregisters instances on: the
	// admin role of PROTOCOL v1.6 (console.admin). Nil: the region's own,
	// which may deregister only where nothing restricts it (an open
	// region).
	Admin *nats.Conn
}

// Region is what the admin page shows: the region's registry, discovery
// nodes and routes, from the followers of hail_instances, hail_nodes and
// hail_config (the registry package's), and the health events, each
// change told to the page's live subscribers. A watch that ends or stalls
// is made again by its follower: the region never stops for it.
type Region struct {
	nc             *nats.Conn
	kv             *bus.Buckets
	cfg            RegionConfig
	log            *slog.Logger
	reg            *registry.Follower
	nodes          *registry.Nodes
	routes         *registry.Routes
	own            []func(context.Context) error // the followers the region runs
	traffic        *trafficBook
	history        *healthHistory
	wrote, refused *metrics.Counter
	invalidStats   *metrics.Counter
	statsWarned    atomic.Int64 // when an invalid snapshot was last logged, unix ns
	dereg          deregistrar

	mu     sync.RWMutex
	states map[string]events.NodeEvent // each node's last node event
	subs   map[chan string]struct{}
	ready  chan struct{}
	done   chan struct{} // closed when Run returns: live streams end
}

// NewRegion makes a region view; Run keeps it current.
func NewRegion(nc *nats.Conn, kv *bus.Buckets, cfg RegionConfig) *Region {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	if cfg.RTTWait <= 0 {
		cfg.RTTWait = 250 * time.Millisecond
	}
	if cfg.TrafficStep <= 0 {
		cfg.TrafficStep = 5 * time.Second
	}
	if cfg.HistoryWindow <= 0 {
		cfg.HistoryWindow = time.Hour
	}
	log := cfg.Logger.With("component", "console")
	r := &Region{
		nc: nc, kv: kv, cfg: cfg, log: log, reg: cfg.Registry, nodes: cfg.Nodes, routes: cfg.Routes,
		traffic: newTrafficBook(cfg.TrafficStep, trafficSteps*cfg.TrafficStep), history: newHealthHistory(cfg.HistoryWindow),
		wrote:        cfg.Metrics.GetOrCreateCounter(`hail_admin_writes_total{outcome="written"}`),
		refused:      cfg.Metrics.GetOrCreateCounter(`hail_admin_writes_total{outcome="refused"}`),
		invalidStats: cfg.Metrics.GetOrCreateCounter(`hail_console_traffic_snapshots_invalid_total`),
		states:       map[string]events.NodeEvent{}, subs: map[chan string]struct{}{},
		ready: make(chan struct{}), done: make(chan struct{}),
		dereg: deregistrar{nc: cmp.Or(cfg.Admin, nc), subjects: cfg.Subjects},
	}
	follow := registry.FollowConfig{Logger: log, Metrics: cfg.Metrics}
	if r.reg == nil {
		r.reg = registry.NewFollower(kv.Instances, follow)
		r.own = append(r.own, r.reg.Run)
	}
	if r.nodes == nil {
		r.nodes = registry.NewNodes(kv.Nodes, follow)
		r.own = append(r.own, r.nodes.Run)
	}
	if r.routes == nil {
		r.routes = registry.NewRoutes(kv.Config, follow)
		r.own = append(r.own, r.routes.Run)
	}
	return r
}

// Ready is closed once the three buckets have been read.
func (r *Region) Ready() <-chan struct{} { return r.ready }

// Run follows the registry, the buckets and the events until ctx ends.
func (r *Region) Run(ctx context.Context) error {
	defer close(r.done)
	sub, err := r.nc.Subscribe(r.cfg.Subjects.HealthAll(), func(m *nats.Msg) {
		if ev, err := events.DecodeHealthEvent(m.Data); err == nil {
			r.history.add(ev, time.Now())
		}
		r.tell("health")
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", r.cfg.Subjects.HealthAll(), err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// Node events live, then each node's last one from the stream: a node
	// that went into self-preservation before the page started says so.
	nsub, err := r.nc.Subscribe(r.cfg.Subjects.NodeEventAll(), func(m *nats.Msg) { r.applyNodeEvent(m.Data, true) })
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", r.cfg.Subjects.NodeEventAll(), err)
	}
	defer func() { _ = nsub.Unsubscribe() }()
	if err := r.readEvents(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{r.cfg.Subjects.NodeEventAll()}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy}, func(data []byte) {
		r.applyNodeEvent(data, false)
	}); err != nil {
		r.log.Warn("read the nodes' last events", "err", err)
	}
	// The health history of the window, then live (above): the strips.
	since := time.Now().Add(-r.cfg.HistoryWindow)
	if err := r.readEvents(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{r.cfg.Subjects.HealthAll()}, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since}, func(data []byte) {
		if ev, err := events.DecodeHealthEvent(data); err == nil {
			r.history.add(ev, time.Now())
		}
	}); err != nil {
		r.log.Warn("read the health history", "err", err)
	}
	defer r.reg.Subscribe(func(registry.Change) { r.tell("instance") })()
	defer r.nodes.Subscribe(func(c registry.NodeChange) {
		// A node refreshes its entry every interval; only a node that
		// joins, restarts or goes is news to the page.
		if c.Joined || !c.Live {
			r.tell("node")
		}
	})()
	defer r.routes.Subscribe(func(registry.RouteChange) { r.tell("route") })()
	// The routers' traffic, for the golden metrics.
	tsub, err := r.nc.Subscribe(r.cfg.Subjects.StatsAll(), func(m *nats.Msg) {
		s, err := events.DecodeRouterStats(m.Data)
		if err != nil {
			r.invalidStats.Inc()
			// Said once a minute: a router that publishes what this
			// console refuses does so every interval.
			if now := time.Now().UnixNano(); now-r.statsWarned.Load() > int64(time.Minute) {
				r.statsWarned.Store(now)
				r.log.Warn("ignoring invalid traffic snapshots", "subject", m.Subject, "err", err)
			}
			return
		}
		r.traffic.add(s, time.Now())
		r.tell("traffic")
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", r.cfg.Subjects.StatsAll(), err)
	}
	defer func() { _ = tsub.Unsubscribe() }()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		for _, ready := range []<-chan struct{}{r.reg.Ready(), r.nodes.Ready(), r.routes.Ready()} {
			select {
			case <-ready:
			case <-gctx.Done():
				return nil
			}
		}
		close(r.ready)
		return nil
	})
	for _, run := range r.own {
		g.Go(func() error { return run(gctx) })
	}
	return g.Wait()
}

// applyNodeEvent keeps a node's state; an older event (from the stream,
// after a live one) does not replace a newer.
func (r *Region) applyNodeEvent(data []byte, live bool) {
	ev, err := events.DecodeNodeEvent(data)
	if err != nil {
		return
	}
	r.mu.Lock()
	if prev, ok := r.states[ev.Node]; ok && prev.TS.After(ev.TS) {
		r.mu.Unlock()
		return
	}
	r.states[ev.Node] = ev
	r.mu.Unlock()
	if live {
		r.tell("node")
	}
}

// Subscribe returns a channel of change kinds (instance, node, route,
// health, traffic) and a function that ends the subscription. A slow subscriber
// misses kinds, never blocks the region: the page refetches on any.
func (r *Region) Subscribe() (<-chan string, func()) {
	ch := make(chan string, 16)
	r.mu.Lock()
	r.subs[ch] = struct{}{}
	r.mu.Unlock()
	return ch, func() {
		r.mu.Lock()
		delete(r.subs, ch)
		r.mu.Unlock()
	}
}

func (r *Region) tell(what string) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for ch := range r.subs {
		select {
		case ch <- what:
		default:
		}
	}
}

// ServiceView is one row of /api/services.
type ServiceView struct {
	events.ServiceSummary
	// Traffic is its golden metrics from the routers' snapshots.
	Traffic TrafficView `json:"traffic"`
	// Drained counts its instances that take no new traffic.
	Drained int `json:"drained"`
	// HealthStrip draws its instances by status over the history window.
	HealthStrip template.HTML `json:"-"`
	// Strategy in force: the route's, or empty for the router's default.
	Strategy string `json:"strategy,omitempty"`
}

// Services are the registered services, by name.
func (r *Region) Services() []ServiceView {
	out, _ := r.services(-1)
	return out
}

// services are the views of the first limit services (all if limit < 0),
// and how many there are.
func (r *Region) services(limit int) ([]ServiceView, int) {
	sums := r.reg.Services()
	total := len(sums)
	if limit >= 0 && limit < total {
		sums = sums[:limit]
	}
	out := make([]ServiceView, len(sums))
	now := time.Now()
	r.mu.RLock()
	defer r.mu.RUnlock()
	for i, s := range sums {
		rt, _ := r.routes.Get(s.Service)
		out[i] = ServiceView{ServiceSummary: s, Strategy: rt.Config.Strategy, Traffic: r.traffic.Service(s.Service, now)}
		weights := rt.Config.Weights
		var all [][]segment
		for _, rec := range r.reg.Service(s.Service) {
			if drained(rec, weights) {
				out[i].Drained++
			}
			all = append(all, r.history.segments(rec.ID, now))
		}
		out[i].HealthStrip = stacked(all, now, r.cfg.HistoryWindow)
	}
	return out, total
}

// drained: the instance takes no new traffic (weight 0, announced or
// routed).
func drained(rec events.InstanceRecord, weights map[string]int) bool {
	w, routed := weights[rec.ID]
	return (routed && w == 0) || (!routed && rec.Weight == 0)
}

// InstanceView is one row of /api/instances: the record as it is in
// hail_instances, and what the page adds.
type InstanceView struct {
	events.InstanceRecord
	// RTTMS is the last heartbeat's round trip in milliseconds, as the
	// owning node reports it; absent when the instance did not answer it.
	RTTMS *float64 `json:"rtt_ms,omitempty"`
	// AgeS is how long the instance has been registered, in seconds.
	AgeS float64 `json:"age_s"`
	// RouteWeight is the weight hail_config gives it, if any.
	RouteWeight *int `json:"route_weight,omitempty"`
	// Drained: it takes no new traffic (weight 0, announced or routed).
	Drained bool `json:"drained"`
	// Traffic is its golden metrics from the routers' snapshots (the
	// attempts it took).
	Traffic TrafficView `json:"traffic"`
	// Health is its statuses over the history window, oldest first;
	// Strip draws them.
	Health []HealthSegment `json:"health"`
	Strip  template.HTML   `json:"-"`
}

// HealthSegment is a stretch of one status.
type HealthSegment struct {
	From   time.Time     `json:"from"`
	To     time.Time     `json:"to"`
	Status events.Status `json:"status"`
	Reason string        `json:"reason,omitempty"`
}

// Instances are the records of service (all services when empty), by key.
func (r *Region) Instances(ctx context.Context, service string) []InstanceView {
	recs := r.reg.Instances(events.InstancesQuery{Service: service})
	rtts := r.RTTs(ctx)
	now := time.Now()
	out := make([]InstanceView, len(recs))
	r.mu.RLock()
	defer r.mu.RUnlock()
	for i, rec := range recs {
		v := InstanceView{InstanceRecord: rec, AgeS: now.Sub(rec.RegisteredAt).Round(time.Second).Seconds()}
		if d, ok := rtts[rec.ID]; ok {
			v.RTTMS = &d
		}
		rt, _ := r.routes.Get(rec.Service)
		w, routed := rt.Config.Weights[rec.ID]
		if routed {
			v.RouteWeight = &w
		}
		v.Drained = drained(rec, rt.Config.Weights)
		v.Traffic = r.traffic.Instance(rec.ID, now)
		segs := r.history.segments(rec.ID, now)
		v.Strip = strip(segs, now, r.cfg.HistoryWindow)
		v.Health = make([]HealthSegment, len(segs))
		for j, sg := range segs {
			v.Health[j] = HealthSegment{From: sg.From, To: sg.To, Status: sg.Status, Reason: sg.Reason}
		}
		out[i] = v
	}
	return out
}

// NodeView is one row of /api/nodes: the hail_nodes record and the
// node's state from its last node event.
type NodeView struct {
	events.NodeRecord
	// State is normal or self_preservation (judging nothing: it seems cut
	// off); Reason says why.
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

// Nodes are the live discovery nodes, by id.
func (r *Region) Nodes() []NodeView {
	live := r.nodes.Live()
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]NodeView, 0, len(live))
	for _, id := range slices.Sorted(maps.Keys(live)) {
		v := NodeView{NodeRecord: live[id], State: events.NodeNormal}
		// A state from before the node's latest start is not its own.
		if ev, ok := r.states[id]; ok && !ev.TS.Before(v.StartedAt) {
			v.State, v.Reason = ev.State, ev.Reason
		}
		out = append(out, v)
	}
	return out
}

// RouteView is one row of /api/routes.
type RouteView struct {
	Service string             `json:"service"`
	Key     string             `json:"key"`
	Config  events.RouteConfig `json:"config"`
	// Invalid says why the stored value is refused by routers.
	Invalid string `json:"invalid,omitempty"`
}

// Routes are the hail_config routes, by service.
func (r *Region) Routes() []RouteView {
	all := r.routes.All()
	out := make([]RouteView, 0, len(all))
	for _, rt := range all {
		out = append(out, RouteView{Service: rt.Service, Key: events.RouteConfigKey(rt.Service), Config: rt.Config, Invalid: rt.Invalid})
	}
	return out
}

// Route is service's route in force and whether one is stored.
func (r *Region) Route(service string) (events.RouteConfig, bool) {
	rt, ok := r.routes.Get(service)
	return rt.Config, ok
}

// RTTs asks every discovery node for its instances' heartbeat RTTs (in
// ms), waiting for as many answers as there are live nodes, at most
// RTTWait.
func (r *Region) RTTs(ctx context.Context) map[string]float64 {
	want := r.nodes.Len()
	out := map[string]float64{}
	if want == 0 {
		return out
	}
	inbox := r.nc.NewRespInbox()
	replies := make(chan *nats.Msg, want)
	sub, err := r.nc.ChanSubscribe(inbox, replies)
	if err != nil {
		return out
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := r.nc.PublishRequest(r.cfg.Subjects.DiscoveryRTT(), inbox, []byte("{}")); err != nil {
		return out
	}
	timer := time.NewTimer(r.cfg.RTTWait)
	defer timer.Stop()
	for got := 0; got < want; got++ {
		select {
		case m := <-replies:
			var rep events.RTTReport
			if json.Unmarshal(m.Data, &rep) == nil {
				maps.Copy(out, rep.RTTMS)
			}
		case <-timer.C:
			return out
		case <-ctx.Done():
			return out
		}
	}
	return out
}
