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

func TestForgetDropsOldTombstones(t *testing.T) {
	r := New()
	r.Put(rec("echo", id1, events.Passing), 1)
	r.Delete("echo."+id1, 1)
	r.Forget(1)
	if len(r.gone) != 0 {
		t.Errorf("tombstones left: %v", r.gone)
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
