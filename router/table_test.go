package router_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/router"
)

// pickable is how many instances the router offers for echo.say now.
func (e *env) pickable() int {
	v := e.router.Table().View("echo")
	if v == nil || v.Endpoint("say") == nil || v.Endpoint("say").Picker == nil {
		return 0
	}
	seen := map[string]bool{}
	for range 50 {
		tg, err := v.Endpoint("say").Picker.Pick("", nil)
		if err != nil {
			return len(seen)
		}
		tg.Done(router.Result{})
		seen[tg.ID] = true
	}
	return len(seen)
}

func TestHealthEventTakesInstanceOutAtOnce(t *testing.T) {
	e := newEnv(t)
	a := e.instance(fakeinst.Options{})
	e.instance(fakeinst.Options{})
	e.routable("echo", 2)
	// A critical event (newer than the record) takes a out before any
	// KV change...
	ev, _ := json.Marshal(events.HealthEvent{ID: a.ID, Service: "echo", Status: events.Critical,
		Previous: events.Passing, Node: e.owner("echo", a.ID), TS: time.Now().UTC()})
	if err := e.NC.Publish(subjects.Health("echo", a.ID), ev); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 2*time.Second, func() error {
		if n := e.pickable(); n != 1 {
			return fmt.Errorf("%d pickable", n)
		}
		return nil
	})
	// ...and the next revision of its record, newer than the event,
	// decides again.
	a.SetWeight(150)
	bustest.Eventually(t, 2*time.Second, func() error {
		if n := e.pickable(); n != 2 {
			return fmt.Errorf("%d pickable", n)
		}
		return nil
	})
	// A stale event (older than the record) changes nothing.
	ev, _ = json.Marshal(events.HealthEvent{ID: a.ID, Service: "echo", Status: events.Critical,
		Previous: events.Passing, Node: e.owner("echo", a.ID), TS: time.Now().Add(-time.Hour).UTC()})
	if err := e.NC.Publish(subjects.Health("echo", a.ID), ev); err != nil {
		t.Fatal(err)
	}
	if err := e.NC.Publish(subjects.Health("echo", a.ID), []byte("{garbage")); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 2*time.Second, func() error {
		if e.counter(`hail_router_rejected_total{reason="bad_event"}`) != 1 {
			return errors.New("bad event not counted")
		}
		return nil
	})
	if n := e.pickable(); n != 2 {
		t.Fatalf("%d pickable after a stale event, want 2", n)
	}
}

// Only the node the registry names as the instance's owner takes it out
// with a health event.
func TestHealthEventFromAnotherNodeIgnored(t *testing.T) {
	e := newEnv(t)
	a := e.instance(fakeinst.Options{})
	e.instance(fakeinst.Options{})
	e.routable("echo", 2)
	for _, node := range []string{uuid.NewString(), ""} {
		ev, _ := json.Marshal(events.HealthEvent{ID: a.ID, Service: "echo", Status: events.Critical,
			Previous: events.Passing, Node: node, TS: time.Now().UTC()})
		if err := e.NC.Publish(subjects.Health("echo", a.ID), ev); err != nil {
			t.Fatal(err)
		}
	}
	bustest.Eventually(t, 5*time.Second, func() error {
		// The event without a node fails validation, the other the owner
		// check: both are counted.
		if got := e.counter(`hail_router_rejected_total{reason="bad_event"}`); got != 2 {
			return fmt.Errorf("%v bad events counted, want 2", got)
		}
		return nil
	})
	if n := e.pickable(); n != 2 {
		t.Fatalf("%d pickable after events from another node, want 2", n)
	}
}

// A down mark the registry never confirms (the instance still answers its
// owner, so its record stays passing) lapses after DownLapse.
func TestDownMarkLapses(t *testing.T) {
	e := newEnvWith(t, router.TableConfig{DownLapse: time.Second})
	a := e.instance(fakeinst.Options{})
	e.instance(fakeinst.Options{})
	e.routable("echo", 2)
	ev, _ := json.Marshal(events.HealthEvent{ID: a.ID, Service: "echo", Status: events.Critical,
		Previous: events.Passing, Node: e.owner("echo", a.ID), TS: time.Now().Add(time.Hour).UTC()})
	if err := e.NC.Publish(subjects.Health("echo", a.ID), ev); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 5*time.Second, func() error {
		if n := e.pickable(); n != 1 {
			return fmt.Errorf("%d pickable, want 1 while marked down", n)
		}
		return nil
	})
	bustest.Eventually(t, 5*time.Second, func() error {
		if n := e.pickable(); n != 2 {
			return fmt.Errorf("%d pickable, want 2 once the mark lapsed", n)
		}
		return nil
	})
}

func TestBadRecordKeepsRouting(t *testing.T) {
	e := newEnv(t)
	a := e.instance(fakeinst.Options{})
	e.routable("echo", 1)
	for _, v := range []string{`{not json`, `{"id":"x"}`} {
		if _, err := e.KV.Instances.Put(t.Context(), "echo."+uuid.NewString(), []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	// Garbage over a live record: the last good one stays in force.
	if _, err := e.KV.Instances.Put(t.Context(), "echo."+a.ID, []byte(`[]`)); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 2*time.Second, func() error {
		if got := e.counter(`hail_router_rejected_total{reason="bad_record"}`); got != 3 {
			return fmt.Errorf("%v bad records counted", got)
		}
		return nil
	})
	m, err := e.NC.Request(subjects.Route("echo", "say"), nil, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != a.ID {
		t.Fatalf("reply %q", m.Data)
	}
}

// New route defaults (the router's config file edited) rebuild every
// service; invalid ones are refused and the old stay.
func TestSetDefaultsRebuildsServices(t *testing.T) {
	e := newEnv(t)
	e.instance(fakeinst.Options{})
	e.routable("echo", 1)
	table := e.router.Table()
	if got := table.View("echo").Route.Strategy; got != "weighted" {
		t.Fatalf("strategy %q before, want weighted", got)
	}
	d := router.DefaultRoute()
	d.Strategy = "round_robin"
	if err := table.SetDefaults(d); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 2*time.Second, func() error {
		if got := table.View("echo").Route.Strategy; got != "round_robin" {
			return fmt.Errorf("strategy %q", got)
		}
		return nil
	})
	d.Strategy = "fastest"
	if err := table.SetDefaults(d); err == nil {
		t.Error("invalid defaults accepted")
	}
	if got := table.View("echo").Route.Strategy; got != "round_robin" {
		t.Errorf("strategy %q after a refused change, want round_robin kept", got)
	}
}

// A scoped instance (v1.2) is heartbeated and reached on the subjects
// under its service's name, next to an unscoped one.
func TestScopedInstanceHeartbeatedAndRouted(t *testing.T) {
	e := newEnv(t)
	scoped := e.instance(fakeinst.Options{Scoped: true})
	plain := e.instance(fakeinst.Options{})
	e.routable("echo", 2)
	for _, in := range []*fakeinst.Instance{scoped, plain} {
		if in.Served() == 0 {
			t.Errorf("instance %s served no routed request", in.ID)
		}
	}
	bustest.Eventually(t, 10*time.Second, func() error {
		for _, in := range []*fakeinst.Instance{scoped, plain} {
			if in.Beats() == 0 {
				return fmt.Errorf("instance %s has had no heartbeat", in.ID)
			}
		}
		return nil
	})
}

// A bucket deleted under a running router makes it say it is not ready
// (it may not make buckets; discovery does) instead of routing on quietly.
func TestDeletedBucketMakesRouterNotReady(t *testing.T) {
	e := newEnv(t)
	e.instance(fakeinst.Options{})
	e.routable("echo", 1)
	if !e.router.Ready() {
		t.Fatal("not ready before the deletion")
	}
	js, err := jetstream.New(e.NC)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteKeyValue(t.Context(), bus.ConfigBucket); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 10*time.Second, func() error {
		if e.router.Ready() {
			return errors.New("still ready")
		}
		return nil
	})
}
