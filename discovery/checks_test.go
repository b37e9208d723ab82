package discovery_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
)

// PROTOCOL v1.1 over NATS: an instance announced with an address, port,
// tags, a failing check and status critical is registered critical (never
// passing first) with those fields; a check flip reaches the record and a
// health event; checks whose output changes every round but whose status
// does not cost no KV write; the tag filter finds it.
func TestV11RecordAndChecks(t *testing.T) {
	e := newEnv(t)
	e.StartNode(discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond}}})
	h := e.watchHealth()
	failing := []events.CheckResult{{Name: "health", Kind: events.CheckHTTP, Status: events.Critical, Output: "GET /health: 503"}}
	f := fakeinst.Start(t, e.URL, fakeinst.Options{Service: "web", Conn: e.NC, Manual: true, Edit: func(a *events.Announce) {
		a.Endpoints = []events.Endpoint{}
		a.Address, a.Port, a.Tags = "127.0.0.1", 8080, []string{"v1", "primary"}
		a.Status, a.Checks = events.Critical, failing
	}})
	f.SetChecks(failing)
	e.mustAnnounce(f)
	ev := h.wait(t, f.ID, events.Critical, time.Second)
	if ev.Previous != "" || ev.Reason != "registered" {
		t.Errorf("first event %+v, want the registration as critical", ev)
	}
	key := events.InstanceKey("web", f.ID)
	rec, err := e.Record(key)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Address != "127.0.0.1" || rec.Port != 8080 || !slices.Equal(rec.Tags, []string{"v1", "primary"}) || rec.Status != events.Critical ||
		len(rec.Checks) != 1 || rec.Checks[0].Status != events.Critical {
		t.Errorf("record %+v", rec)
	}

	// Output changing every round, status steady: nothing written.
	entry, err := e.KV.Instances.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		f.SetChecks([]events.CheckResult{{Name: "health", Kind: events.CheckHTTP, Status: events.Critical, Output: time.Now().String(), Since: time.Now()}})
		e.beats(f, 2)
	}
	if again, err := e.KV.Instances.Get(t.Context(), key); err != nil || again.Revision() != entry.Revision() {
		t.Errorf("output-only changes wrote the record: revision %d -> %v (%v)", entry.Revision(), again, err)
	}

	// The check flips: record and event.
	start := time.Now()
	f.SetChecks([]events.CheckResult{{Name: "health", Kind: events.CheckHTTP, Status: events.Passing, Output: "200 OK"}})
	ev = h.wait(t, f.ID, events.Passing, time.Second)
	if ev.Previous != events.Critical {
		t.Errorf("event %+v", ev)
	}
	e.waitStatus(key, events.Passing, time.Second)
	if rec, _ := e.Record(key); len(rec.Checks) != 1 || rec.Checks[0].Status != events.Passing {
		t.Errorf("checks after the flip: %+v", rec.Checks)
	}
	t.Logf("check flip in the record and an event after %v", time.Since(start).Round(time.Millisecond))

	// The tag filter.
	var recs []events.InstanceRecord
	for tag, want := range map[string]int{"primary": 1, "v2": 0} {
		if err := json.Unmarshal(e.request(subjects.DiscoveryInstances(), []byte(`{"tag":"`+tag+`"}`)).Data, &recs); err != nil {
			t.Fatal(err)
		}
		if len(recs) != want {
			t.Errorf("tag %s: %d instances, want %d", tag, len(recs), want)
		}
	}
}

// An instance that keeps answering while its check fails stays
// registered, critical, past deregister_after; silence removes it.
func TestCriticalByCheckIsNotRemoved(t *testing.T) {
	e := newEnv(t)
	e.StartNode(discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 50 * time.Millisecond, Timeout: 25 * time.Millisecond}, DeregisterAfter: 300 * time.Millisecond}})
	h := e.watchHealth()
	failing := []events.CheckResult{{Name: "disk", Kind: events.CheckScript, Status: events.Critical}}
	f := fakeinst.Start(t, e.URL, fakeinst.Options{Service: "web", Conn: e.NC, Manual: true, Edit: func(a *events.Announce) {
		a.Status, a.Checks = events.Critical, failing
	}})
	f.SetChecks(failing)
	e.mustAnnounce(f)
	h.wait(t, f.ID, events.Critical, time.Second)
	e.beats(f, 60) // ten times deregister_after of answered heartbeats
	if rec, err := e.Record(events.InstanceKey("web", f.ID)); err != nil || rec.Status != events.Critical {
		t.Fatalf("an answering instance with a failing check: %+v, %v", rec, err)
	}
	f.Silence()
	h.wait(t, f.ID, events.Deregistered, 2*time.Second)
}

// beats waits until f has been heartbeated n more times.
func (e *env) beats(f *fakeinst.Instance, n int64) {
	e.T.Helper()
	want := f.Beats() + n
	bustest.Eventually(e.T, time.Duration(n)*time.Second, func() error {
		if got := f.Beats(); got < want {
			return fmt.Errorf("%d heartbeats, waiting for %d", got, want)
		}
		return nil
	})
}

// Any registry size can be listed: page by page, each under the limit, all
// of them once, in key order.
func TestInstancesPaging(t *testing.T) {
	e := newEnv(t)
	e.StartNode(discovery.Config{})
	const n = 50
	for range n {
		e.mustAnnounce(e.fake("echo"))
	}
	seen := map[string]bool{}
	last := ""
	for after, pages := "", 0; ; pages++ {
		if pages > n {
			t.Fatal("paging does not end")
		}
		var page []events.InstanceRecord
		q := fmt.Sprintf(`{"limit":20,"after":%q}`, after)
		if err := json.Unmarshal(e.request(subjects.DiscoveryInstances(), []byte(q)).Data, &page); err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		if len(page) > 20 {
			t.Fatalf("page of %d", len(page))
		}
		for _, rec := range page {
			if seen[rec.Key()] || rec.Key() <= last {
				t.Fatalf("key %s repeated or out of order after %s", rec.Key(), last)
			}
			seen[rec.Key()], last = true, rec.Key()
		}
		after = page[len(page)-1].Key()
	}
	if len(seen) != n {
		t.Errorf("paged %d instances, want %d", len(seen), n)
	}
	// An after that is not a key would start the answer from the top (a
	// bare id sorts before every "echo." key) or skip a service: refused,
	// saying what a key is.
	id := strings.TrimPrefix(last, "echo.")
	for _, after := range []string{id, "echo", "echo.", ".x", "echo.nope", "Echo." + id} {
		m := e.request(subjects.DiscoveryInstances(), fmt.Appendf(nil, `{"limit":20,"after":%q}`, after))
		code, text, isErr := events.ReplyError(m)
		if !isErr || code != 400 || !strings.Contains(text, "<service>.<id>") {
			t.Errorf("after %q: code %d %q (error reply %v), want a 400 saying a key is <service>.<id>", after, code, text, isErr)
		}
	}
}

// A request whose reply subject is not under _INBOX. is not answered, so
// nobody can make a node publish where they may not (a health subject).
func TestRepliesOnlyToInboxes(t *testing.T) {
	e := newEnv(t)
	set := metrics.NewSet()
	e.StartNode(discovery.Config{Metrics: set})
	got := make(chan *nats.Msg, 4)
	sub, err := e.NC.ChanSubscribe("hail.health.echo.forged", got)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := e.NC.PublishRequest(subjects.DiscoveryServices(), "hail.health.echo.forged", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 5*time.Second, func() error {
		var b strings.Builder
		set.WritePrometheus(&b)
		if !strings.Contains(b.String(), `hail_discovery_rejected_total{reason="reply_subject"} 1`) {
			return fmt.Errorf("not counted yet")
		}
		return nil
	})
	select {
	case m := <-got:
		t.Errorf("the node answered on %s: %s", m.Subject, m.Data)
	default:
	}
}

// Entries in hail_nodes that are not a node's (a key that is no UUID, a
// value that is no NodeRecord of that id) are no members: they cannot take
// instances away from the real nodes.
func TestForgedNodesAreNoMembers(t *testing.T) {
	e := newEnv(t)
	set := metrics.NewSet()
	e.StartNode(discovery.Config{Metrics: set})
	forged := uuid.NewString()
	for key, value := range map[string]string{"not-a-uuid": `{"id":"not-a-uuid"}`, forged: `{}`, uuid.NewString(): `{"id":"` + forged + `"}`} {
		if _, err := e.KV.Nodes.Put(t.Context(), key, []byte(value)); err != nil {
			t.Fatal(err)
		}
	}
	real := uuid.NewString()
	if _, err := e.KV.Nodes.Put(t.Context(), real, []byte(`{"id":"`+real+`","started_at":"2026-12-02T10:00:00Z","ts":"2026-12-02T10:00:00Z"}`)); err != nil {
		t.Fatal(err)
	}
	// The watch is ordered: once the real one is counted, the forged ones
	// before it were seen and refused.
	bustest.Eventually(t, 5*time.Second, func() error {
		var b strings.Builder
		set.WritePrometheus(&b)
		if !strings.Contains(b.String(), "hail_discovery_nodes 2\n") {
			return fmt.Errorf("nodes gauge: %s", grepLine(b.String(), "hail_discovery_nodes "))
		}
		return nil
	})
}

func grepLine(text, prefix string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// A key holding garbage does not lock its instance out: the next valid
// announce replaces it.
func TestAnnounceOverwritesGarbage(t *testing.T) {
	e := newEnv(t)
	e.StartNode(discovery.Config{})
	f := e.fake("echo")
	key := events.InstanceKey("echo", f.ID)
	if _, err := e.KV.Instances.Put(t.Context(), key, []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	e.mustAnnounce(f)
	e.waitStatus(key, events.Passing, 5*time.Second)
}
