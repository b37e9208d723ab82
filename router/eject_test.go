package router

import (
	"testing"

	"github.com/google/uuid"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/registry"
)

// An ejected instance that the registry then takes out (critical) leaves
// its place under the ejection bound: the next instance to fail, the last
// at home say, is ejected too, and picks go past it (to another region)
// instead of drawing no-responders until the registry catches up.
func TestRegistryOutFreesEjection(t *testing.T) {
	tab, err := NewTable(nil, TableConfig{})
	if err != nil {
		t.Fatal(err)
	}
	tab.reg = registry.NewFollower(nil, registry.FollowConfig{})
	rev := uint64(0)
	put := func(rec events.InstanceRecord) {
		rev++
		tab.reg.Apply(rec.Key(), rec, rev, false)
		tab.applyChange(registry.Change{Key: rec.Key(), Service: rec.Service, ID: rec.ID, Record: rec, Rev: rev})
		tab.publish()
	}
	rec := func() events.InstanceRecord {
		return events.InstanceRecord{Announce: events.Announce{ID: uuid.NewString(), Service: "echo", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100},
			Status: events.Passing}
	}
	first := rec()
	put(first)
	v := tab.View("echo")
	target, err := v.Endpoint("say").Picker.Pick("", nil)
	if err != nil {
		t.Fatal(err)
	}
	target.Done(Result{})
	if !v.state.eject(target) {
		t.Fatal("the one instance could not be ejected")
	}
	first.Status = events.Critical
	put(first)
	second := rec()
	put(second)
	v = tab.View("echo")
	target, err = v.Endpoint("say").Picker.Pick("", nil)
	if err != nil || target.ID != second.ID {
		t.Fatalf("pick %v, %v; want %s", target, err, second.ID)
	}
	target.Done(Result{})
	if !v.state.eject(target) {
		t.Error("the second instance could not be ejected: the first, out by the registry, still holds the bound")
	}
}
