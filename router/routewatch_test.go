package router

import (
	"testing"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
)

// A watch of routes made again after one ended replaces the routes with
// its snapshot: one deleted in the gap goes, the others stay.
func TestRouteWatchAgainDropsRoutesDeletedInTheGap(t *testing.T) {
	nc := bustest.Connect(t, bustest.RunServer(t).ClientURL())
	kv := bustest.Buckets(t, nc)
	for _, svc := range []string{"a", "b"} {
		if _, err := kv.Config.Put(t.Context(), events.RouteConfigKey(svc), []byte(`{"strategy":"hash"}`)); err != nil {
			t.Fatal(err)
		}
	}
	tbl, err := NewTable(nc, TableConfig{})
	if err != nil {
		t.Fatal(err)
	}
	snapshot := func() {
		t.Helper()
		w, err := kv.Config.Watch(t.Context(), events.RouteConfigKey(">"))
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		for e := range w.Updates() {
			if tbl.applyRouteUpdate(routeUpdate{entry: e, end: e == nil}) {
				return
			}
		}
		t.Fatal("the watch ended before its snapshot did")
	}
	snapshot()
	for _, svc := range []string{"a", "b"} {
		if s := tbl.services[svc]; s == nil || !s.hasRoute || s.route.Strategy != "hash" {
			t.Fatalf("route of %s not applied: %+v", svc, s)
		}
	}
	if err := kv.Config.Delete(t.Context(), events.RouteConfigKey("b")); err != nil {
		t.Fatal(err)
	}
	tbl.applyRouteUpdate(routeUpdate{restart: true})
	snapshot()
	if !tbl.services["a"].hasRoute {
		t.Error("the route of a went with the old watch")
	}
	if tbl.services["b"].hasRoute {
		t.Error("the route of b, deleted in the gap, is still in force")
	}
}
