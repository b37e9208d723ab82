package registry

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/watch"
)

// Route is one service's route.<service> in hail_config.
type Route struct {
	Service string
	// Config is the route in force: the last valid value stored (the
	// zero value, the router's defaults, when none was).
	Config events.RouteConfig
	// Valid: Config holds a valid value, now or before.
	Valid bool
	// Rev is the revision of the value stored now.
	Rev uint64
	// Invalid says why the value stored now is refused (routers keep
	// Config); empty when it is valid.
	Invalid string
}

// RouteChange is one change to the routes.
type RouteChange struct {
	Route
	Deleted bool
}

// Routes follows the routes of hail_config. A program shares one: the
// router's table routes by them, the console shows and edits them.
type Routes struct {
	w       *watch.Watch
	log     *slog.Logger
	invalid func()
	ready   chan struct{}
	loaded  bool // owned by the watch's goroutine
	subs    subscribers[RouteChange]

	mu     sync.RWMutex
	routes map[string]Route
}

// NewRoutes makes a follower of the routes in kv (hail_config); Run
// follows it.
func NewRoutes(kv jetstream.KeyValue, cfg FollowConfig) *Routes {
	cfg.setDefaults()
	r := &Routes{log: cfg.Logger.With("component", "routes"), invalid: cfg.Invalid, ready: make(chan struct{}), routes: map[string]Route{}}
	r.w = watch.New(kv, watch.Handler{Apply: r.apply, Synced: r.synced}, cfg.watchConfig(events.RouteConfigKey("")))
	return r
}

// Run follows the bucket until ctx ends.
func (r *Routes) Run(ctx context.Context) error { return r.w.Run(ctx) }

// Ready is closed once the routes as of the start are loaded.
func (r *Routes) Ready() <-chan struct{} { return r.ready }

// Subscribe calls fn with every change from now on, in order, on the
// follower's goroutine (as Follower.Subscribe).
func (r *Routes) Subscribe(fn func(RouteChange)) (cancel func()) { return r.subs.add(fn) }

// Get returns service's route and whether one is stored.
func (r *Routes) Get(service string) (Route, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	rt, ok := r.routes[service]
	return rt, ok
}

// All returns the stored routes, by service.
func (r *Routes) All() []Route {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Route, 0, len(r.routes))
	for _, s := range slices.Sorted(maps.Keys(r.routes)) {
		out = append(out, r.routes[s])
	}
	return out
}

func (r *Routes) synced() {
	if !r.loaded {
		r.loaded = true
		close(r.ready)
	}
}

func (r *Routes) apply(e watch.Entry) {
	service, err := events.ParseRouteConfigKey(e.Key)
	if err != nil {
		r.invalid()
		r.log.Warn("ignoring a route for an invalid service name", "key", e.Key, "err", err)
		return
	}
	r.mu.Lock()
	prev, had := r.routes[service]
	if e.Deleted {
		delete(r.routes, service)
		r.mu.Unlock()
		if !had {
			return // a delete replayed, or of a route never stored
		}
		r.log.Info("route removed; defaults apply", "service", service)
		r.subs.tell(RouteChange{Route: Route{Service: service, Rev: e.Rev}, Deleted: true})
		return
	}
	cfg, err := events.DecodeRouteConfig(e.Value)
	rt := Route{Service: service, Config: cfg, Valid: true, Rev: e.Rev}
	if err != nil {
		rt.Config, rt.Valid, rt.Invalid = prev.Config, prev.Valid, err.Error()
	}
	r.routes[service] = rt
	r.mu.Unlock()
	if err != nil {
		r.invalid()
		r.log.Error("route config rejected; the last good one stays", "service", service, "revision", e.Rev, "err", err)
	} else {
		r.log.Info("route config applied", "service", service, "revision", e.Rev, "strategy", cfg.Strategy)
	}
	r.subs.tell(RouteChange{Route: rt})
}
