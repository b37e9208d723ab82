package discovery_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/bus/embedded"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/nats-io/nats.go/jetstream"
)

func TestAnnounceAgainUpdatesWithoutEvent(t *testing.T) {
	e := newEnv(t)
	e.StartNode(discovery.Config{})
	h := e.watchHealth()
	f := e.fake("echo")
	e.mustAnnounce(f)
	h.wait(t, f.ID, events.Passing, time.Second)
	key := events.InstanceKey("echo", f.ID)
	before, _ := e.KV.Instances.Get(context.Background(), key)

	// The same announce again writes nothing.
	e.mustAnnounce(f)
	after, _ := e.KV.Instances.Get(context.Background(), key)
	if after.Revision() != before.Revision() {
		t.Errorf("unchanged announce wrote KV: revision %d -> %d", before.Revision(), after.Revision())
	}
	// A changed one updates the record in place.
	e.request(subjects.Announce("echo"), fmt.Appendf(nil, `{"id":%q,"service":"echo","version":"2.0.0","endpoints":[{"name":"say"},{"name":"slow"}],"weight":0}`, f.ID))
	r, err := e.Record(key)
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != "2.0.0" || r.Weight != 0 || len(r.Endpoints) != 2 || r.Status != events.Passing {
		t.Errorf("updated record %+v", r)
	}
	h.none(t, events.Passing, events.Critical, events.Deregistered)
}

func TestCriticalRemovedAfterDeregisterAfter(t *testing.T) {
	e := newEnv(t)
	e.StartNode(discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond}, DeregisterAfter: 500 * time.Millisecond}})
	h := e.watchHealth()
	f := e.fake("echo")
	e.mustAnnounce(f)
	f.Silence()
	h.wait(t, f.ID, events.Critical, 2*time.Second)
	ev := h.wait(t, f.ID, events.Deregistered, 2*time.Second)
	if ev.Previous != events.Critical || !strings.Contains(ev.Reason, "critical for") {
		t.Errorf("removal event %+v", ev)
	}
	if _, err := e.Record(events.InstanceKey("echo", f.ID)); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("record still there: %v", err)
	}
}

// A node restarted with the KV intact resumes heartbeating the recorded
// instances without flapping them, and becomes their owner.
func TestRestartDoesNotFlap(t *testing.T) {
	e := newEnv(t)
	_, stop := e.StartNode(discovery.Config{})
	var fs []*fakeinst.Instance
	for range 5 {
		f := e.fake("echo")
		e.mustAnnounce(f)
		fs = append(fs, f)
	}
	h := e.watchHealth()
	stop()
	// The instances keep answering; the new node picks them up from KV.
	n2, _ := e.StartNode(discovery.Config{})
	for _, f := range fs {
		key := events.InstanceKey("echo", f.ID)
		bustest.Eventually(t, 3*time.Second, func() error {
			r, err := e.Record(key)
			if err != nil {
				return err
			}
			if r.Node != n2.ID() {
				return fmt.Errorf("%s owned by %s, want %s", key, r.Node, n2.ID())
			}
			return nil
		})
	}
	beatsBefore := fs[0].Beats()
	bustest.Eventually(t, 5*time.Second, func() error {
		if fs[0].Beats() < beatsBefore+4 {
			return errors.New("waiting for four rounds of the new node")
		}
		return nil
	})
	h.none(t, events.Critical, events.Deregistered, events.Passing)
	for _, f := range fs {
		e.waitStatus(events.InstanceKey("echo", f.ID), events.Passing, 100*time.Millisecond)
	}
}

// With nothing changing, the node writes nothing to hail_instances.
func TestQuietRegistryWritesNothing(t *testing.T) {
	e := newEnv(t)
	e.StartNode(discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 50 * time.Millisecond, Timeout: 25 * time.Millisecond}}})
	var fs []*fakeinst.Instance
	for range 10 {
		f := e.fake("echo")
		e.mustAnnounce(f)
		fs = append(fs, f)
	}
	seq := func() uint64 {
		st, err := e.KV.Instances.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st.(*jetstream.KeyValueBucketStatus).StreamInfo().State.LastSeq
	}
	first := seq()
	beats := fs[0].Beats()
	bustest.Eventually(t, 10*time.Second, func() error {
		if fs[0].Beats() < beats+40 {
			return errors.New("waiting for 40 heartbeat rounds")
		}
		return nil
	})
	if last := seq(); last != first {
		t.Errorf("%d KV writes during 40 quiet heartbeat rounds over 10 instances", last-first)
	}
}

// An operator's garbage in hail_instances is refused: the node keeps the
// last good record, counts the problem and keeps serving.
func TestBadRecordInKVIgnored(t *testing.T) {
	e := newEnv(t)
	var cfg discovery.Config
	cfg.Metrics = newMetricsSet()
	e.StartNode(cfg)
	f := e.fake("echo")
	e.mustAnnounce(f)
	key := events.InstanceKey("echo", f.ID)
	// One at a time: the bucket keeps one revision per key, so a watch
	// that falls behind sees only the last of quick successive puts.
	for i, bad := range []string{`not json`, `{"id":"x"}`, fmt.Sprintf(`{"id":%q,"service":"other","endpoints":[{"name":"a"}],"status":"passing"}`, f.ID)} {
		if _, err := e.KV.Instances.Put(context.Background(), key, []byte(bad)); err != nil {
			t.Fatal(err)
		}
		bustest.Eventually(t, 5*time.Second, func() error {
			if v := counter(cfg.Metrics, `hail_discovery_rejected_total{reason="bad_record"}`); v != float64(i+1) {
				return fmt.Errorf("%v bad records counted, want %d", v, i+1)
			}
			return nil
		})
	}
	var recs []events.InstanceRecord
	m := e.request(subjects.DiscoveryInstances(), []byte(`{"service":"echo"}`))
	if err := json.Unmarshal(m.Data, &recs); err != nil || len(recs) != 1 || recs[0].ID != f.ID || recs[0].Status != events.Passing {
		t.Errorf("after garbage, instances = %s", m.Data)
	}
	other := e.fake("echo")
	e.mustAnnounce(other)
	// The next transition writes the last good record, changed, back
	// over the garbage.
	f.Silence()
	e.waitStatus(key, events.Critical, 10*time.Second)
}

// An answer the server could not carry is refused with a message that
// says how to narrow the query, instead of leaving the caller to time out.
func TestAnswerOverMaxPayload(t *testing.T) {
	s, err := embedded.StartServer(embedded.ServerOptions{Name: "small", Port: -1, StoreDir: t.TempDir(), MaxPayload: 4096})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	nc := bustest.Connect(t, s.ClientURL())
	e := envOn(t, s.ClientURL(), nc)
	e.StartNode(discovery.Config{})
	for range 20 {
		e.mustAnnounce(e.fake("echo"))
	}
	m := e.request(subjects.DiscoveryInstances(), nil)
	code, text, isErr := events.ReplyError(m)
	if !isErr || code != 400 || !strings.Contains(text, "max payload") {
		t.Errorf("got %d %q (error %v)", code, text, isErr)
	}
	m = e.request(subjects.DiscoveryServices(), nil)
	if _, _, isErr := events.ReplyError(m); isErr {
		t.Errorf("services: %s", m.Data)
	}
}

// An id names one instance of one service: announcing it under a second
// service is refused, and the first registration stays.
func TestIDUnderTwoServicesRefused(t *testing.T) {
	e := newEnv(t)
	e.StartNode(discovery.Config{})
	f := e.fake("echo")
	e.mustAnnounce(f)
	m := e.request(subjects.Announce("other"), fmt.Appendf(nil, `{"id":%q,"service":"other","endpoints":[{"name":"say"}]}`, f.ID))
	code, text, isErr := events.ReplyError(m)
	if !isErr || code != 400 || !strings.Contains(text, `registered under service "echo"`) {
		t.Fatalf("reply %d %q, want a 400 naming service echo", code, text)
	}
	if _, err := e.Record(events.InstanceKey("other", f.ID)); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("record under the second service: %v", err)
	}
	e.waitStatus(events.InstanceKey("echo", f.ID), events.Passing, time.Second)
}

// A node that adopts more records than one batch of claims holds claims
// them all, batch after batch. The heartbeat interval is long, so no
// transition (which writes the owner too) does it instead.
func TestClaimsInBatches(t *testing.T) {
	e := newEnv(t)
	const n = 600 // over two batches of 256
	other := uuid.NewString()
	for range n {
		a := events.Announce{ID: uuid.NewString(), Service: "echo", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100}
		rec := events.InstanceRecord{Announce: a, Status: events.Passing, Node: other}
		if _, err := e.KV.Instances.Create(t.Context(), rec.Key(), mustJSON(t, rec)); err != nil {
			t.Fatal(err)
		}
	}
	node, _ := e.StartNode(discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: time.Hour}}})
	bustest.Eventually(t, 20*time.Second, func() error {
		keys, err := e.KV.Instances.ListKeys(t.Context())
		if err != nil {
			return err
		}
		claimed := 0
		for k := range keys.Keys() {
			r, err := e.Record(k)
			if err != nil {
				return err
			}
			if r.Node == node.ID() {
				claimed++
			}
		}
		if claimed != n {
			return fmt.Errorf("%d of %d records claimed", claimed, n)
		}
		return nil
	})
}
