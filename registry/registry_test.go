package registry

import (
	"testing"

	"github.com/hailsd/hail/events"
)

func rec(service, id string, status events.Status) events.InstanceRecord {
	return events.InstanceRecord{Announce: events.Announce{ID: id, Service: service}, Status: status}
}

const (
	id1 = "0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a61"
	id2 = "0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a62"
	id3 = "0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a63"
)

func TestRevisionsOrderReports(t *testing.T) {
	r := New()
	if !r.Put(rec("echo", id1, events.Passing), 5) {
		t.Fatal("first put refused")
	}
	if r.Put(rec("echo", id1, events.Critical), 4) {
		t.Error("older put accepted")
	}
	if got, _ := r.Get("echo." + id1); got.Status != events.Passing {
		t.Errorf("status %s after older put", got.Status)
	}
	if !r.Delete("echo."+id1, 6) {
		t.Error("delete refused")
	}
	// The watch's echo of the put at 5 arrives after the delete.
	if r.Put(rec("echo", id1, events.Passing), 5) {
		t.Error("put older than the delete brought the record back")
	}
	if !r.Put(rec("echo", id1, events.Passing), 7) {
		t.Error("newer put after delete refused")
	}
}

func TestWatchDropsTombstonesItPassed(t *testing.T) {
	r := New()
	r.Put(rec("echo", id1, events.Passing), 1)
	r.Delete("echo."+id1, 1)
	if r.Tombstones() != 1 {
		t.Fatalf("tombstones %d after a delete the watch has not reached, want 1", r.Tombstones())
	}
	// The watch delivers the put's echo (refused: deleted since), then
	// the delete itself.
	if r.Apply("echo."+id1, rec("echo", id1, events.Passing), 1, false) {
		t.Error("the echo of a put older than the delete was taken as news")
	}
	if !r.Apply("echo."+id1, events.InstanceRecord{}, 2, true) {
		t.Error("the echo of the delete was refused")
	}
	if len(r.gone) != 0 || r.expiry.Len() != 0 {
		t.Errorf("tombstones left: %v (heap %d)", r.gone, r.expiry.Len())
	}
}

// The watch is ordered, so what a writer reports at or below the revision
// the watch has delivered is already known or superseded.
func TestEchoRules(t *testing.T) {
	tests := []struct {
		name  string
		steps func(r *Registry) bool // the last step's outcome
		want  bool
		state events.Status // "" when the key must be absent
	}{
		{"watch news is stored", func(r *Registry) bool {
			return r.Apply("echo."+id1, rec("echo", id1, events.Passing), 3, false)
		}, true, events.Passing},
		{"the echo of a writer's put is no news but not stale", func(r *Registry) bool {
			r.Put(rec("echo", id1, events.Critical), 3)
			return r.Apply("echo."+id1, rec("echo", id1, events.Critical), 3, false)
		}, true, events.Critical},
		{"a writer's report the watch has passed is refused", func(r *Registry) bool {
			r.Apply("echo."+id1, rec("echo", id1, events.Passing), 3, false)
			r.Apply("echo."+id1, events.InstanceRecord{}, 4, true)
			return r.Put(rec("echo", id1, events.Critical), 3)
		}, false, ""},
		{"a late watch echo never undoes a newer write", func(r *Registry) bool {
			r.Put(rec("echo", id1, events.Critical), 5)
			return r.Apply("echo."+id1, rec("echo", id1, events.Passing), 4, false)
		}, false, events.Critical},
		{"a watch delete older than a writer's put is refused", func(r *Registry) bool {
			r.Put(rec("echo", id1, events.Critical), 5)
			return r.Apply("echo."+id1, events.InstanceRecord{}, 4, true)
		}, false, events.Critical},
		{"the echo of a writer's delete is told", func(r *Registry) bool {
			r.Put(rec("echo", id1, events.Critical), 5)
			r.Delete("echo."+id1, 5)
			return r.Apply("echo."+id1, events.InstanceRecord{}, 6, true)
		}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New()
			if got := tt.steps(r); got != tt.want {
				t.Errorf("outcome %v, want %v", got, tt.want)
			}
			got, ok := r.Get("echo." + id1)
			if tt.state == "" && ok {
				t.Errorf("key present as %s, want absent", got.Status)
			}
			if tt.state != "" && (!ok || got.Status != tt.state) {
				t.Errorf("key %v %s, want %s", ok, got.Status, tt.state)
			}
		})
	}
}

func TestServiceIsOneServicesCopy(t *testing.T) {
	r := New()
	r.Put(rec("echo", id2, events.Passing), 1)
	r.Put(rec("echo", id1, events.Passing), 2)
	r.Put(rec("other", id3, events.Passing), 3)
	got := r.Service("echo")
	if len(got) != 2 || got[0].ID != id1 || got[1].ID != id2 {
		t.Errorf("Service(echo) = %v, want %s then %s", got, id1, id2)
	}
	if len(r.Service("nosuch")) != 0 {
		t.Error("an unknown service has records")
	}
}

func TestQueries(t *testing.T) {
	r := New()
	r.Put(rec("echo", id1, events.Passing), 1)
	r.Put(rec("echo", id2, events.Critical), 2)
	r.Put(rec("com.example.login", id3, events.Passing), 3)
	tests := []struct {
		name string
		q    events.InstancesQuery
		want []string
	}{
		{"all", events.InstancesQuery{}, []string{"com.example.login." + id3, "echo." + id1, "echo." + id2}},
		{"service", events.InstancesQuery{Service: "echo"}, []string{"echo." + id1, "echo." + id2}},
		{"status", events.InstancesQuery{Status: events.Critical}, []string{"echo." + id2}},
		{"both", events.InstancesQuery{Service: "echo", Status: events.Passing}, []string{"echo." + id1}},
		{"service prefix is not a match", events.InstancesQuery{Service: "ech"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := r.Instances(tt.q)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d records, want %d", len(got), len(tt.want))
			}
			for i, g := range got {
				if g.Key() != tt.want[i] {
					t.Errorf("record %d = %s, want %s", i, g.Key(), tt.want[i])
				}
			}
		})
	}
	svcs := r.Services()
	want := []events.ServiceSummary{{Service: "com.example.login", Instances: 1, Passing: 1}, {Service: "echo", Instances: 2, Passing: 1, Critical: 1}}
	if len(svcs) != len(want) || svcs[0] != want[0] || svcs[1] != want[1] {
		t.Errorf("Services() = %+v, want %+v", svcs, want)
	}
}

func TestOtherService(t *testing.T) {
	r := New()
	const id = "0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a6b"
	rec := func(svc string) events.InstanceRecord {
		return events.InstanceRecord{Announce: events.Announce{ID: id, Service: svc}}
	}
	r.Put(rec("a"), 1)
	if _, taken := r.OtherService(id, "a"); taken {
		t.Error("its own service counts as another")
	}
	if s, taken := r.OtherService(id, "b"); !taken || s != "a" {
		t.Errorf("OtherService(b) = %q, %v; want a", s, taken)
	}
	r.Put(rec("a"), 2) // an update adds nothing
	r.Delete(events.InstanceKey("a", id), 3)
	if _, taken := r.OtherService(id, "b"); taken {
		t.Error("a deleted record still holds its id")
	}
}

func TestByID(t *testing.T) {
	r := New()
	const id = "0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a6b"
	if _, ok := r.ByID(id); ok {
		t.Fatal("found in an empty registry")
	}
	r.Put(events.InstanceRecord{Announce: events.Announce{ID: id, Service: "echo", Weight: 7}}, 1)
	if got, ok := r.ByID(id); !ok || got.Service != "echo" || got.Weight != 7 {
		t.Errorf("ByID = %+v, %v; want the echo record", got, ok)
	}
	r.Delete(events.InstanceKey("echo", id), 2)
	if _, ok := r.ByID(id); ok {
		t.Error("a deleted record is still found")
	}
}

func TestInstancesPaged(t *testing.T) {
	r := New()
	ids := []string{id1, id2, id3}
	for i, id := range ids {
		r.Put(rec("echo", id, events.Passing), uint64(i+1))
	}
	var keys []string
	for after := ""; ; {
		page := r.Instances(events.InstancesQuery{Limit: 2, After: after})
		if len(page) == 0 {
			break
		}
		if len(page) > 2 {
			t.Fatalf("page of %d, limit 2", len(page))
		}
		for _, rec := range page {
			keys = append(keys, rec.Key())
		}
		after = page[len(page)-1].Key()
	}
	if len(keys) != 3 || keys[0] != "echo."+id1 || keys[2] != "echo."+id3 {
		t.Errorf("paged keys %v", keys)
	}
}
