package discovery_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/nats-io/nats.go/jetstream"
)

// On a 3-node cluster the buckets have three replicas and the spine works
// the same: register, judge, deregister, with revision-checked writes on a
// replicated stream (whose conflict error differs from a single server's).
func TestNodeOnCluster(t *testing.T) {
	c := bustest.RunCluster(t, 3)
	nc := bustest.Connect(t, c.URLs())
	kv := bustest.Buckets(t, nc)
	if kv.Replicas != 3 {
		t.Fatalf("replicas %d", kv.Replicas)
	}
	e := envOn(t, c.URLs(), nc)
	e.StartNode(discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond}}})
	h := e.watchHealth()
	f := e.fake("echo")
	e.mustAnnounce(f)
	h.wait(t, f.ID, events.Passing, time.Second)
	f.Silence()
	h.wait(t, f.ID, events.Critical, 2*time.Second)
	f.Speak()
	h.wait(t, f.ID, events.Passing, 2*time.Second)

	// An operator's edit is kept: whether the node sees it through the
	// watch first or learns of it from a failed CAS update, its own
	// transition lands on top of it (the conflict path itself is
	// TestUpdateRetriesOnConflict).
	key := events.InstanceKey("echo", f.ID)
	entry, err := kv.Instances.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := events.DecodeInstanceRecord(entry.Value())
	if _, err := kv.Instances.Update(context.Background(), key, entry.Value(), entry.Revision()-1); !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		t.Errorf("stale update on R3: %v, want ErrKeyRevisionMismatch", err)
	}
	rec.Metadata = map[string]string{"edited": "by operator"}
	if _, err := kv.Instances.Put(context.Background(), key, mustJSON(t, rec)); err != nil {
		t.Fatal(err)
	}
	f.Silence()
	h.wait(t, f.ID, events.Critical, 2*time.Second)
	got, err := e.Record(key)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != events.Critical || got.Metadata["edited"] != "by operator" {
		t.Errorf("record after conflicting edit: %+v", got)
	}
	e.request(subjects.Deregister("echo"), f.DeregisterData())
	if _, err := e.Record(key); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("after deregister: %v", err)
	}
}

// Many instances change in the same round (a rack goes dark, then comes
// back; a node restarts and claims every record): every transition is
// written and announced once, and a restart flaps none of them.
func TestMassTransitionsOnCluster(t *testing.T) {
	const n = 100
	c := bustest.RunCluster(t, 3)
	nc := bustest.Connect(t, c.URLs())
	e := envOn(t, c.URLs(), nc)
	cfg := discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 200 * time.Millisecond, Timeout: 100 * time.Millisecond},
		// Every instance falling silent at once is what self-preservation
		// exists for; this test is about writing the transitions.
		SelfPreservation: discovery.SelfPreservation{Share: 1}}}
	_, stop := e.StartNode(cfg)
	var fs []*fakeinst.Instance
	for range n {
		f := e.fake("echo")
		e.mustAnnounce(f)
		fs = append(fs, f)
	}
	h := e.watchHealth()
	count := func(status events.Status, want int) {
		t.Helper()
		seen := map[string]bool{}
		deadline := time.After(10 * time.Second)
		for len(seen) < want {
			select {
			case ev := <-h.ch:
				if ev.Status != status {
					t.Fatalf("unexpected %+v while waiting for %s", ev, status)
				}
				if seen[ev.ID] {
					t.Fatalf("two %s events for %s", status, ev.ID)
				}
				seen[ev.ID] = true
			case <-deadline:
				t.Fatalf("%d of %d %s events", len(seen), want, status)
			}
		}
	}
	for _, f := range fs {
		f.Silence()
	}
	count(events.Critical, n)
	for _, f := range fs {
		f.Speak()
	}
	count(events.Passing, n)

	stop()
	n2, _ := e.StartNode(cfg)
	bustest.Eventually(t, 10*time.Second, func() error {
		m := e.request(subjects.DiscoveryInstances(), []byte(`{"service":"echo","status":"passing"}`))
		var recs []events.InstanceRecord
		if err := json.Unmarshal(m.Data, &recs); err != nil {
			return err
		}
		claimed := 0
		for _, r := range recs {
			if r.Node == n2.ID() {
				claimed++
			}
		}
		if claimed != n {
			return fmt.Errorf("%d of %d passing records claimed by the new node", claimed, n)
		}
		return nil
	})
	beats := fs[0].Beats()
	bustest.Eventually(t, 5*time.Second, func() error {
		if fs[0].Beats() < beats+4 {
			return errors.New("waiting for four rounds")
		}
		return nil
	})
	h.none(t, events.Critical, events.Deregistered, events.Passing)
}
