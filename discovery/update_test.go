package discovery

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/uuid"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/nats-io/nats.go"
)

// A write against a stale revision fails, and update re-reads the record,
// applies its change on top of the newer one and writes again.
func TestUpdateRetriesOnConflict(t *testing.T) {
	for _, servers := range []int{1, 3} {
		t.Run(map[int]string{1: "single server", 3: "R3 cluster"}[servers], func(t *testing.T) {
			url := ""
			if servers == 1 {
				url = bustest.RunServer(t).ClientURL()
			} else {
				url = bustest.RunCluster(t, 3).URLs()
			}
			nc := bustest.Connect(t, url)
			kv := bustest.Buckets(t, nc)
			n, err := New(nc, kv, Config{})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			rec := events.InstanceRecord{
				Announce: events.Announce{ID: uuid.NewString(), Service: "echo", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100},
				Status:   events.Passing,
				Node:     uuid.NewString(),
			}
			data, _ := json.Marshal(rec)
			rev, err := kv.Instances.Create(ctx, rec.Key(), data)
			if err != nil {
				t.Fatal(err)
			}
			tr := n.owned.track(rec, rev)
			// Someone else writes in between.
			edited := rec
			edited.Version = "9.9.9"
			data, _ = json.Marshal(edited)
			if _, err := kv.Instances.Put(ctx, rec.Key(), data); err != nil {
				t.Fatal(err)
			}
			if err := n.records.update(ctx, tr, func(r *events.InstanceRecord) { r.Status = events.Critical }); err != nil {
				t.Fatalf("update after conflict: %v", err)
			}
			entry, err := kv.Instances.Get(ctx, rec.Key())
			if err != nil {
				t.Fatal(err)
			}
			got, err := events.DecodeInstanceRecord(entry.Value())
			if err != nil {
				t.Fatal(err)
			}
			if got.Version != "9.9.9" || got.Status != events.Critical || got.Node != n.ID() {
				t.Errorf("record after conflict: %+v", got)
			}
			if entry.Revision() != tr.rev || entry.Revision() != rev+2 {
				t.Errorf("revision %d, tracked %d, created at %d", entry.Revision(), tr.rev, rev)
			}
		})
	}
}

// An announce whose key another node already wrote (the watch has not
// delivered it yet) adopts that record and claims it, as adoption through
// the watch does.
func TestAnnounceAdoptsExistingRecord(t *testing.T) {
	n, _, kv := idleNode(t)
	ctx := context.Background()
	a := events.Announce{ID: uuid.NewString(), Service: "echo", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100}
	other := events.InstanceRecord{Announce: a, Status: events.Passing, Node: uuid.NewString()}
	data, _ := json.Marshal(other)
	if _, err := kv.Instances.Create(ctx, other.Key(), data); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(a)
	n.regs.offerAnnounce(ctx, &nats.Msg{Subject: "hail.announce.echo", Data: body})
	runWork(t, n)
	entry, err := kv.Instances.Get(ctx, other.Key())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := events.DecodeInstanceRecord(entry.Value())
	if got.Node != n.ID() || got.Status != events.Passing {
		t.Errorf("record after announce: node %s status %s, want node %s passing", got.Node, got.Status, n.ID())
	}
	if n.owned.get(other.Key()) == nil {
		t.Error("announced instance not tracked")
	}
}
