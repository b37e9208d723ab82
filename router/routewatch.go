package router

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/events"
)

// routeUpdate is one step of the watch of hail_config's routes: an entry,
// the end of a snapshot (entry nil), or a new watch starting (restart).
type routeUpdate struct {
	entry   jetstream.KeyValueEntry
	end     bool
	restart bool
}

// watchRoutes passes the watch's updates to the loop. A watch that ends
// under a running table (its ordered consumer could not be made again: a
// starved or reconnecting client) is made again, after a pause, instead
// of stopping the router: the routes in force stay meanwhile, and the
// new watch's snapshot replaces them, so a route deleted in the gap goes.
func (t *Table) watchRoutes(ctx context.Context, b *bus.Buckets, w jetstream.KeyWatcher, out chan<- routeUpdate) error {
	send := func(u routeUpdate) bool {
		select {
		case out <- u:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		for e := range w.Updates() {
			if !send(routeUpdate{entry: e, end: e == nil}) {
				_ = w.Stop()
				return nil
			}
		}
		_ = w.Stop()
		for {
			if ctx.Err() != nil {
				return nil
			}
			t.m.routeRewatches.Inc()
			t.log.Warn("the watch of routes ended; watching again", "bucket", bus.ConfigBucket)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			var err error
			if w, err = b.Config.Watch(ctx, events.RouteConfigKey(">")); err == nil {
				break
			}
			t.log.Warn("watch routes", "bucket", bus.ConfigBucket, "err", fmt.Errorf("watch again: %w", err))
		}
		if !send(routeUpdate{restart: true}) {
			_ = w.Stop()
			return nil
		}
	}
}

// applyRouteUpdate applies u and reports whether a snapshot ended.
func (t *Table) applyRouteUpdate(u routeUpdate) bool {
	switch {
	case u.restart:
		t.resnapshot = map[string]bool{}
	case u.end:
		if t.resnapshot != nil {
			for name, s := range t.services {
				if s.hasRoute && !t.resnapshot[name] {
					s.route, s.hasRoute = events.RouteConfig{}, false
					t.log.Info("route removed while the watch was down; defaults apply", "service", name)
					t.dirty[name] = true
				}
			}
			t.resnapshot = nil
		}
		return true
	default:
		if t.resnapshot != nil {
			t.resnapshot[strings.TrimPrefix(u.entry.Key(), events.RouteConfigKey(""))] = true
		}
		t.applyRoute(u.entry)
	}
	return false
}

func (t *Table) applyRoute(e jetstream.KeyValueEntry) {
	name := strings.TrimPrefix(e.Key(), events.RouteConfigKey(""))
	if err := events.ValidateService(name); err != nil {
		t.m.badRoutes.Inc()
		t.log.Warn("ignoring route for an invalid service name", "key", e.Key(), "err", err)
		return
	}
	s := t.service(name)
	if e.Operation() != jetstream.KeyValuePut {
		s.route, s.hasRoute = events.RouteConfig{}, false
		t.log.Info("route removed; defaults apply", "service", name)
		t.dirty[name] = true
		return
	}
	c, err := events.DecodeRouteConfig(e.Value())
	if err != nil {
		t.m.badRoutes.Inc()
		t.log.Error("route config rejected; the last good one stays", "service", name, "revision", e.Revision(), "err", err)
		return
	}
	s.route, s.hasRoute = c, true
	t.log.Info("route config applied", "service", name, "revision", e.Revision(), "strategy", c.Strategy)
	t.dirty[name] = true
}
