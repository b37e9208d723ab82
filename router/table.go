package router

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
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

// TableConfig configures a Table.
type TableConfig struct {
	Subjects events.Subjects
	// Route is the routing policy a service's hail_config route
	// overrides; zero fields take DefaultRoute's.
	Route    RouteDefaults
	Ejection Ejection
	Logger   *slog.Logger
	// Metrics receives the table's and the forwarder's metrics; nil makes
	// a private set.
	Metrics *metrics.Set
	// Registry and Routes are the program's followers of hail_instances
	// and of hail_config's routes, shared and run by their owner; nil:
	// the table makes and runs its own.
	Registry *registry.Follower
	Routes   *registry.Routes
	// DownLapse is how long a health event's down mark holds when the
	// registry does not confirm it (no newer record arrives). Default 10s.
	DownLapse time.Duration
	// AZ is the router's zone: requests stay in it while its instances
	// can carry their share (PROTOCOL v1.5). Empty: one zone.
	AZ string
	// RemoteRegions are the other regions a service with no instance at
	// home is routed to, nearest first (PROTOCOL v1.5); regions of
	// hail_remote not named come after them by measured round-trip time.
	// Empty: hail_remote is not followed, nothing is routed abroad.
	RemoteRegions []string
	// RemoteStale is how long a region's source may be inactive before
	// it is not routed to. Default 10s.
	RemoteStale time.Duration
	// Remote is the program's follower of hail_remote, shared and run by
	// its owner; nil: the table makes and runs its own when
	// RemoteRegions is set.
	Remote *registry.Remote
}

// defaultDownLapse: the registry's critical record follows a health
// event within milliseconds; ten seconds is many heartbeat intervals.
const defaultDownLapse = 10 * time.Second

func (c *TableConfig) setDefaults() {
	if c.DownLapse <= 0 {
		c.DownLapse = defaultDownLapse
	}
	d := DefaultRoute()
	if c.Route == (RouteDefaults{}) {
		c.Route = d
	}
	// Fields with no meaningful zero take their default one by one, so
	// a caller can set the strategy alone. (0 retries and a 0 warning
	// weight mean something, so they are taken as given.)
	if c.Route.Strategy == "" {
		c.Route.Strategy = d.Strategy
	}
	if c.Route.Timeout == 0 {
		c.Route.Timeout = d.Timeout
	}
	if c.Route.HashLoadFactor == 0 {
		c.Route.HashLoadFactor = d.HashLoadFactor
	}
	if c.Route.RetryBudget == 0 {
		c.Route.RetryBudget = d.RetryBudget
	}
	if c.Route.MinRetriesPerSecond == 0 {
		c.Route.MinRetriesPerSecond = d.MinRetriesPerSecond
	}
	c.Ejection.setDefaults()
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = metrics.NewSet()
	}
}

// Table is the routing table: for each service, the route in force and a
// picker per endpoint over the instances that may take requests. It is
// built from the registry (a registry.Follower of hail_instances: a change
// rebuilds only its service, from that service's records), the health
// events (which can only take an instance out, sooner), and the routes of
// hail_config (a registry.Routes). Lookups read an immutable snapshot and never block.
type Table struct {
	nc  *nats.Conn
	cfg TableConfig
	log *slog.Logger
	m   *tableMetrics

	views    atomic.Pointer[map[string]*View]
	ready    chan struct{}
	defaults chan RouteDefaults // SetDefaults to the loop

	reg    *registry.Follower // set by Run
	routes *registry.Routes   // set by Run
	remote *registry.Remote   // set by Run; nil: nothing abroad
	// bucketsLost: a bucket or the events stream was deleted under the
	// table (guardBuckets).
	bucketsLost atomic.Bool

	// Owned by the loop in Run.
	services map[string]*service
	dirty    map[string]bool
	closings closings
}

// View is one service as the router sees it at one moment.
type View struct {
	Service string
	Route   Route
	// Abroad are the other regions routed to when no instance at home
	// can take a request, nearest first: those with an instance that may.
	Abroad    []string
	endpoints map[string]*Endpoint
	state     *serviceState
	loads     map[string]*Load // by instance id, for the traffic snapshots
}

// Endpoint is one endpoint of a service.
type Endpoint struct {
	Name string
	// Picker is nil when the endpoint is known but no instance may take
	// a request now.
	Picker Picker
	// Drained counts the instances serving it that are healthy but
	// weighted 0, so a 503 can say they are drained rather than unhealthy.
	Drained int
	stats   *endpointStats
}

// Endpoint returns the endpoint called name, or nil if no instance of the
// service has it.
func (v *View) Endpoint(name string) *Endpoint { return v.endpoints[name] }

// service is the loop's working state of one service.
type service struct {
	name string
	// statuses are the last status seen of each instance, to tell one
	// that becomes healthy again; the records are the registry's.
	statuses map[string]events.Status
	// down holds ids a health event took out and when; the next KV
	// revision of the instance, which is at least as new, decides again,
	// and a mark the registry never confirms lapses (DownLapse).
	down     map[string]time.Time
	loads    map[string]*Load
	route    events.RouteConfig
	hasRoute bool
	state    *serviceState
	// regions are the service's instances in other regions (hail_remote),
	// by region.
	regions map[string]*regionService
	// away: no instance at home may take requests and another region's
	// can (logged as it turns).
	away bool
}

// NewTable makes a table; Run fills and maintains it.
func NewTable(nc *nats.Conn, cfg TableConfig) (*Table, error) {
	cfg.setDefaults()
	if err := cfg.Route.Validate(); err != nil {
		return nil, fmt.Errorf("route defaults: %w", err)
	}
	t := &Table{
		nc: nc, cfg: cfg, log: cfg.Logger.With("component", "table"),
		ready: make(chan struct{}), defaults: make(chan RouteDefaults, 1), services: map[string]*service{}, dirty: map[string]bool{},
	}
	t.m = newTableMetrics(cfg.Metrics, t)
	empty := map[string]*View{}
	t.views.Store(&empty)
	return t, nil
}

// Ready is closed once the table holds the registry's and hail_config's
// contents as of start-up.
func (t *Table) Ready() <-chan struct{} { return t.ready }

// View returns the service's current view, or nil if no instance of it is
// registered.
func (t *Table) View(service string) *View { return (*t.views.Load())[service] }

// SetDefaults replaces the route defaults while the table runs; every
// service is rebuilt with them. Invalid defaults are refused and the ones
// in force stay.
func (t *Table) SetDefaults(d RouteDefaults) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("route defaults: %w", err)
	}
	for {
		select {
		case t.defaults <- d:
			return nil
		default:
			select { // replace a value the loop has not taken yet
			case <-t.defaults:
			default:
			}
		}
	}
}

// Run opens the buckets (waiting for discovery to create them), follows
// them and keeps the table current until ctx ends.
func (t *Table) Run(ctx context.Context) error {
	b, err := bus.OpenBuckets(ctx, t.nc, t.log)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	t.reg, t.routes = t.cfg.Registry, t.cfg.Routes
	follow := registry.FollowConfig{Logger: t.log, Metrics: t.cfg.Metrics}
	var run []func(context.Context) error // the followers the table owns
	if t.reg == nil {
		follow.Invalid = t.m.badRecords.Inc
		t.reg = registry.NewFollower(b.Instances, follow)
		run = append(run, t.reg.Run)
	}
	if t.routes == nil {
		follow.Invalid = t.m.badRoutes.Inc
		t.routes = registry.NewRoutes(b.Config, follow)
		run = append(run, t.routes.Run)
	}
	t.remote = t.cfg.Remote
	if t.remote == nil && len(t.cfg.RemoteRegions) > 0 {
		js, err := jetstream.New(t.nc)
		if err != nil {
			return fmt.Errorf("jetstream: %w", err)
		}
		follow.Invalid = t.m.badRecords.Inc
		t.remote = registry.NewRemote(js, registry.RemoteConfig{FollowConfig: follow, StaleAfter: t.cfg.RemoteStale})
		run = append(run, t.remote.Run)
	}
	remotes := make(chan registry.RemoteChange, 1024)
	var remoteLoaded <-chan struct{}
	if t.remote != nil {
		remoteLoaded = t.remote.Ready()
		defer t.remote.Subscribe(func(c registry.RemoteChange) {
			select {
			case remotes <- c:
			case <-ctx.Done():
			}
		})()
	}
	changes := make(chan registry.Change, 1024)
	// Subscribed before the followers start: the initial records and
	// routes come as changes too. (A shared follower may have loaded
	// already: the loop reads what it holds once loaded, and a change
	// seen both ways is applied twice, which is harmless.)
	defer t.reg.Subscribe(func(c registry.Change) {
		select {
		case changes <- c:
		case <-ctx.Done():
		}
	})()
	routes := make(chan registry.RouteChange, 256)
	defer t.routes.Subscribe(func(c registry.RouteChange) {
		select {
		case routes <- c:
		case <-ctx.Done():
		}
	})()
	downs := make(chan healthDown, 1024)
	sub, err := t.nc.Subscribe(t.cfg.Subjects.HealthAll(), func(m *nats.Msg) { t.onHealth(m, downs) })
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", t.cfg.Subjects.HealthAll(), err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	g, gctx := errgroup.WithContext(ctx)
	for _, f := range run {
		g.Go(func() error { return f(gctx) })
	}
	g.Go(func() error { return t.loop(gctx, changes, routes, downs, remotes, remoteLoaded) })
	g.Go(func() error { return t.guardBuckets(gctx, b) })
	return g.Wait()
}

// loop applies the registry's changes, routes, health events and new
// defaults, and publishes views once a burst is over.
func (t *Table) loop(ctx context.Context, changes <-chan registry.Change, routes <-chan registry.RouteChange, downs chan healthDown,
	remotes <-chan registry.RemoteChange, remoteLoaded <-chan struct{}) error {
	instLoaded, confLoaded := t.reg.Ready(), t.routes.Ready()
	lapse := time.NewTicker(t.cfg.DownLapse / 2)
	defer lapse.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-lapse.C:
			t.lapseDowns(now)
		case c := <-changes:
			t.applyChange(c)
		case <-instLoaded:
			instLoaded = nil
			t.reg.Each(func(rec events.InstanceRecord, rev uint64) {
				t.applyChange(registry.Change{Key: rec.Key(), Service: rec.Service, ID: rec.ID, Record: rec, Rev: rev})
			})
		case <-confLoaded:
			confLoaded = nil
			for _, rt := range t.routes.All() {
				t.applyRoute(registry.RouteChange{Route: rt})
			}
		case c := <-routes:
			t.applyRoute(c)
		case c := <-remotes:
			t.applyRemote(c)
		case <-remoteLoaded:
			// hail_remote may never exist: the table is ready without it.
			remoteLoaded = nil
			t.remote.Each(func(region string, rec events.InstanceRecord, rev uint64) {
				t.applyRemote(registry.RemoteChange{Region: region, Change: registry.Change{Key: rec.Key(), Service: rec.Service, ID: rec.ID, Record: rec, Rev: rev}})
			})
		case d := <-downs:
			t.applyDown(d)
		case d := <-t.defaults:
			t.cfg.Route = d
			for name := range t.services {
				t.dirty[name] = true
			}
			t.log.Info("route defaults changed", "strategy", d.Strategy, "timeout", d.Timeout, "retries", d.Retries)
		}
		// Coalesce a burst (start-up, a mass transition) into one rebuild
		// per service: rebuild only once nothing more is waiting.
		if len(changes) > 0 || len(routes) > 0 || len(downs) > 0 || len(remotes) > 0 {
			continue
		}
		if instLoaded != nil || confLoaded != nil {
			continue
		}
		t.publish()
		t.closings.flush() // after the views without them are out
		select {
		case <-t.ready:
		default:
			t.log.Info("routing table loaded", "services", len(t.services))
			close(t.ready)
		}
	}
}

func (t *Table) service(name string) *service {
	s := t.services[name]
	if s == nil {
		s = &service{
			name: name, statuses: map[string]events.Status{}, down: map[string]time.Time{},
			loads: map[string]*Load{}, state: newServiceState(t.cfg.Ejection, t.cfg.Route),
		}
		t.services[name] = s
	}
	return s
}

// applyChange takes in a change to the registry: the service is rebuilt
// from the registry's records of it, and a health event's down mark on
// the instance gives way to its newer record.
func (t *Table) applyChange(c registry.Change) {
	if c.Deleted {
		s := t.services[c.Service]
		if s == nil {
			return
		}
		delete(s.statuses, c.ID)
		delete(s.down, c.ID)
		if l := s.loads[c.ID]; l != nil {
			s.state.lift(l)
			delete(s.loads, c.ID)
		}
		t.dirty[c.Service] = true
		return
	}
	s := t.service(c.Service)
	prev, had := s.statuses[c.ID]
	s.statuses[c.ID] = c.Record.Status
	delete(s.down, c.ID)
	if c.Record.Status == events.Passing && (!had || prev != events.Passing) {
		// Healthy again (or new): whatever passive detection saw before
		// is forgotten.
		if l := s.loads[c.ID]; l != nil {
			s.state.lift(l)
			l.resetStreak()
		}
	}
	t.dirty[c.Service] = true
}

// publish rebuilds the dirty services' views and swaps the map.
func (t *Table) publish() {
	if len(t.dirty) == 0 {
		return
	}
	old := *t.views.Load()
	next := make(map[string]*View, len(old)+len(t.dirty))
	for k, v := range old {
		next[k] = v
	}
	for name := range t.dirty {
		s := t.services[name]
		var recs []events.InstanceRecord
		var abroad []regionRecords
		if s != nil {
			recs = t.reg.Service(name)
			abroad = t.abroad(name)
		}
		if len(recs) == 0 && len(abroad) == 0 {
			delete(next, name)
			if s != nil && !s.hasRoute && !s.knownAbroad() {
				delete(t.services, name)
			}
			continue
		}
		next[name] = t.build(s, recs, abroad)
	}
	clear(t.dirty)
	t.views.Store(&next)
}

// build makes a service's view from its records (ordered by id) and its
// records in other regions (nearest first): the targets that may take
// requests and a picker per endpoint over those that serve it, at home
// first and abroad only when no instance at home can take the request.
func (t *Table) build(s *service, recs []events.InstanceRecord, abroad []regionRecords) *View {
	route := t.cfg.Route.resolve(s.route)
	v := &View{Service: s.name, Route: route, endpoints: map[string]*Endpoint{}, state: s.state, loads: map[string]*Load{}}
	home := t.targets(recs, route, s.down, s.loads, s.state, "", v)
	s.state.pickable.Store(int64(home.pickable))
	away := make([]regionTargets, 0, len(abroad))
	awayPickable := 0
	for _, a := range abroad {
		rs := s.region(a.region, t)
		rt := t.targets(a.recs, route, nil, rs.loads, rs.state, a.region, nil)
		rs.state.pickable.Store(int64(rt.pickable))
		awayPickable += rt.pickable
		if rt.pickable > 0 {
			v.Abroad = append(v.Abroad, a.region)
		}
		away = append(away, rt)
	}
	t.logAway(s, home.pickable, awayPickable, abroad)
	// Endpoints served by the same instances share one picker, so weights
	// and rotations hold across them.
	shared := map[string]Picker{}
	names := map[string]bool{}
	for name := range home.byEndpoint {
		names[name] = true
	}
	for _, a := range away {
		for name := range a.byEndpoint {
			names[name] = true
		}
	}
	for name := range names {
		e := &Endpoint{Name: name, Drained: home.drainedBy[name], stats: t.m.endpoint(s.name, name)}
		v.endpoints[name] = e
		local := home.byEndpoint[name]
		sig := signature(local)
		var regions [][]*Target
		for _, a := range away {
			if ts := a.byEndpoint[name]; len(ts) > 0 {
				regions = append(regions, ts)
				sig += "|" + a.region + ":" + signature(ts)
			}
		}
		if len(local) == 0 && len(regions) == 0 {
			continue
		}
		p, ok := shared[sig]
		if !ok {
			var err error
			if p, err = t.picker(route, local, regions); err != nil {
				// Validated routes name known strategies; this is a bug.
				t.log.Error("build picker", "service", s.name, "err", err)
				continue
			}
			shared[sig] = p
		}
		e.Picker = p
	}
	return v
}

// picker is the picker of one endpoint: the route's strategy over the
// instances at home (the zone choice first, for a router with a zone),
// and only when none of them can take a request, over each other
// region's in turn.
func (t *Table) picker(route Route, local []*Target, regions [][]*Target) (Picker, error) {
	var home Picker
	if len(local) > 0 {
		var err error
		if route.ZoneAware && t.cfg.AZ != "" {
			home, err = newZonePicker(route.Strategy, local, route.HashLoadFactor, t.cfg.AZ)
		} else {
			home, err = NewPicker(route.Strategy, local, route.HashLoadFactor)
		}
		if err != nil || len(regions) == 0 {
			return home, err
		}
	}
	f := &failover{home: home}
	for _, ts := range regions {
		p, err := NewPicker(route.Strategy, ts, route.HashLoadFactor)
		if err != nil {
			return nil, err
		}
		f.regions = append(f.regions, p)
	}
	return f, nil
}

// regionTargets are one region's targets of a service by endpoint.
type regionTargets struct {
	region     string
	byEndpoint map[string][]*Target
	drainedBy  map[string]int
	pickable   int
}

// targets makes the targets of recs that may take requests, with their
// loads (kept in loads, counted in state), by endpoint. An endpoint no
// target serves is listed with none. v, when not nil, gets the loads for
// the traffic snapshots.
func (t *Table) targets(recs []events.InstanceRecord, route Route, down map[string]time.Time, loads map[string]*Load, state *serviceState, region string, v *View) regionTargets {
	out := regionTargets{region: region, byEndpoint: map[string][]*Target{}, drainedBy: map[string]int{}}
	for _, rec := range recs {
		id := rec.ID
		for _, ep := range rec.Endpoints {
			if _, ok := out.byEndpoint[ep.Name]; !ok {
				out.byEndpoint[ep.Name] = nil
			}
		}
		_, isDown := down[id]
		w := t.weight(rec, route, isDown)
		if w <= 0 {
			if l := loads[id]; l != nil {
				// Out by the registry (or a health event): its ejection
				// need not hold a place under the service's bound, which
				// the next one to fail (the last at home, say) needs.
				state.lift(l)
			}
			if !isDown && drained(rec, route) {
				for _, ep := range rec.Endpoints {
					out.drainedBy[ep.Name]++
				}
			}
			continue
		}
		l := loads[id]
		if l == nil {
			l = newLoad(&state.inflight, &state.clock)
			l.owner = state
			loads[id] = l
		}
		out.pickable++
		if v != nil {
			v.loads[id] = l
		}
		target := &Target{ID: id, Weight: w, Scoped: rec.Scoped, AZ: rec.AZ, Region: region, load: l}
		for _, ep := range rec.Endpoints {
			out.byEndpoint[ep.Name] = append(out.byEndpoint[ep.Name], target)
		}
	}
	return out
}

// drained says whether an instance is healthy but weighted 0, by its
// announce or the route's weights: out of the picks by choice.
func drained(rec events.InstanceRecord, route Route) bool {
	w := rec.Weight
	if o, ok := route.Weights[rec.ID]; ok {
		w = o
	}
	return w == 0 && (rec.Status == events.Passing || rec.Status == events.Warning)
}

// weight is the weight an instance is picked by, 0 for none.
func (t *Table) weight(rec events.InstanceRecord, route Route, down bool) int {
	if down {
		return 0
	}
	w := rec.Weight
	if o, ok := route.Weights[rec.ID]; ok {
		w = o
	}
	switch rec.Status {
	case events.Passing:
		return w
	case events.Warning:
		if w == 0 || t.cfg.Route.WarningWeight == 0 {
			return 0
		}
		return max(1, int(float64(w)*t.cfg.Route.WarningWeight))
	}
	return 0
}

func signature(targets []*Target) string {
	var b strings.Builder
	for _, t := range targets {
		b.WriteString(t.ID)
	}
	return b.String()
}

// BucketsLost reports that a bucket or the events stream was deleted
// while the table ran. Its followers watch the new buckets (the watch
// package), but the records went with the old one and the region rebuilds
// them only as its programs restart, so its router reports not ready
// until restarted.
func (t *Table) BucketsLost() bool { return t.bucketsLost.Load() }

// bucketCheckEvery is how often the table looks for its buckets.
const bucketCheckEvery = 3 * time.Second

// guardBuckets looks for the buckets every few seconds. The router may not
// make them (only discovery may), so it says so loudly and stays not ready.
func (t *Table) guardBuckets(ctx context.Context, b *bus.Buckets) error {
	js, err := jetstream.New(t.nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	// The streams as the table started: one made again since (by a
	// discovery node) lost what the region held.
	var first map[string]time.Time
	for wait := time.Duration(0); ; wait = bucketCheckEvery {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		created, err := b.Created(lctx, js)
		cancel()
		if err != nil {
			continue // a failed look says nothing of whether they exist
		}
		if first == nil {
			first = created
		}
		var lost []string
		for name, at := range created {
			if !at.Equal(first[name]) || at.IsZero() {
				lost = append(lost, name)
			}
		}
		if len(lost) > 0 && !t.bucketsLost.Swap(true) {
			t.log.Error("buckets deleted under a running router: it routes from its last table and stays not ready until restarted", "lost", lost)
		}
	}
}
