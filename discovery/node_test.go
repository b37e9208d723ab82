package discovery_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/bus/embedded"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var subjects events.Subjects

type env struct {
	t   *testing.T
	url string
	nc  *nats.Conn // the test's own client, as a hidden test or an operator would use
	kv  *bus.Buckets
}

func newEnv(t *testing.T) *env {
	t.Helper()
	s := bustest.RunServer(t)
	nc := bustest.Connect(t, s.ClientURL())
	return &env{t: t, url: s.ClientURL(), nc: nc, kv: bustest.Buckets(t, nc)}
}

// startNode runs a discovery node on its own connection until the test
// ends or stop is called, and waits until it is ready.
func (e *env) startNode(cfg discovery.Config) (n *discovery.Node, stop func()) {
	e.t.Helper()
	nc, err := nats.Connect(e.url)
	if err != nil {
		e.t.Fatal(err)
	}
	kv, err := bus.EnsureBuckets(e.t.Context(), nc, bus.BucketOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	n, err = discovery.New(nc, kv, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					e.t.Errorf("node Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				e.t.Error("node did not stop within 10s")
			}
			nc.Close()
		})
	}
	e.t.Cleanup(stop)
	select {
	case <-n.Serving():
	case err := <-done:
		done <- err // for the cleanup that waits on it
		e.t.Fatalf("node stopped before serving: %v", err)
	case <-time.After(10 * time.Second):
		e.t.Fatal("node not serving within 10s")
	}
	return n, stop
}

// fake is an instance that speaks PROTOCOL.md by hand, with a switch to
// stop answering heartbeats.
type fake struct {
	id, service string
	silent      atomic.Bool
	beats       atomic.Int64
}

func (e *env) fake(service string) *fake {
	e.t.Helper()
	f := &fake{id: uuid.NewString(), service: service}
	_, err := e.nc.Subscribe(subjects.Heartbeat(f.id), func(m *nats.Msg) {
		f.beats.Add(1)
		if f.silent.Load() {
			return
		}
		m.Respond(fmt.Appendf(nil, `{"id":%q,"status":"passing","inflight":0}`, f.id))
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.nc.Flush()
	return f
}

func (f *fake) announce() []byte {
	return fmt.Appendf(nil, `{"id":%q,"service":%q,"version":"1.0.0","endpoints":[{"name":"say"}],"weight":100}`, f.id, f.service)
}

func (f *fake) deregister() []byte {
	return fmt.Appendf(nil, `{"id":%q,"service":%q,"reason":"shutdown"}`, f.id, f.service)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func (e *env) request(subject string, data []byte) *nats.Msg {
	e.t.Helper()
	m, err := e.nc.Request(subject, data, 2*time.Second)
	if err != nil {
		e.t.Fatalf("request %s: %v", subject, err)
	}
	return m
}

func (e *env) mustAnnounce(f *fake) {
	e.t.Helper()
	m := e.request(subjects.Announce(f.service), f.announce())
	var ack events.Ack
	if err := json.Unmarshal(m.Data, &ack); err != nil || !ack.OK || ack.ID != f.id {
		e.t.Fatalf("announce ack %s (%v), headers %v", m.Data, err, m.Header)
	}
}

func (e *env) record(key string) (events.InstanceRecord, error) {
	entry, err := e.kv.Instances.Get(context.Background(), key)
	if err != nil {
		return events.InstanceRecord{}, err
	}
	return events.DecodeInstanceRecord(entry.Value())
}

func (e *env) waitStatus(key string, want events.Status, timeout time.Duration) {
	e.t.Helper()
	bustest.Eventually(e.t, timeout, func() error {
		r, err := e.record(key)
		if err != nil {
			return err
		}
		if r.Status != want {
			return fmt.Errorf("%s is %s, want %s", key, r.Status, want)
		}
		return nil
	})
}

// healthEvents collects every health event from now on.
type healthEvents struct {
	ch chan events.HealthEvent
}

func (e *env) watchHealth() *healthEvents {
	e.t.Helper()
	h := &healthEvents{ch: make(chan events.HealthEvent, 10000)}
	sub, err := e.nc.Subscribe(subjects.HealthAll(), func(m *nats.Msg) {
		var ev events.HealthEvent
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			e.t.Errorf("health event %s: %v", m.Data, err)
			return
		}
		if want := subjects.Health(ev.Service, ev.ID); m.Subject != want {
			e.t.Errorf("health event on %s, want %s", m.Subject, want)
		}
		h.ch <- ev
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { sub.Unsubscribe() })
	e.nc.Flush()
	return h
}

func (h *healthEvents) wait(t *testing.T, id string, status events.Status, timeout time.Duration) events.HealthEvent {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-h.ch:
			if ev.ID == id && ev.Status == status {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event for %s within %v", status, id, timeout)
		}
	}
}

// none fails if an event of a listed status arrives for any instance
// before the channel drains.
func (h *healthEvents) none(t *testing.T, statuses ...events.Status) {
	t.Helper()
	for {
		select {
		case ev := <-h.ch:
			for _, s := range statuses {
				if ev.Status == s {
					t.Errorf("unexpected event %+v", ev)
				}
			}
		default:
			return
		}
	}
}

func TestRawAnnounceRegistersPassing(t *testing.T) {
	e := newEnv(t)
	n, _ := e.startNode(discovery.Config{})
	h := e.watchHealth()
	f := e.fake("echo")
	start := time.Now()
	if err := e.nc.Publish(subjects.Announce("echo"), f.announce()); err != nil {
		t.Fatal(err)
	}
	key := events.InstanceKey("echo", f.id)
	e.waitStatus(key, events.Passing, time.Second)
	ev := h.wait(t, f.id, events.Passing, time.Second-time.Since(start))
	if ev.Previous != "" || ev.Service != "echo" || ev.Node != n.ID() {
		t.Errorf("registration event %+v", ev)
	}
	r, _ := e.record(key)
	if r.Node != n.ID() || r.RegisteredAt.IsZero() || r.UpdatedAt.IsZero() || r.Version != "1.0.0" || r.Weight != 100 {
		t.Errorf("record %+v", r)
	}
	// Its first heartbeat follows within an interval.
	bustest.Eventually(t, 2*time.Second, func() error {
		if f.beats.Load() == 0 {
			return errors.New("no heartbeat yet")
		}
		return nil
	})
}

func TestMissedHeartbeatsAndRecovery(t *testing.T) {
	e := newEnv(t)
	e.startNode(discovery.Config{}) // PROTOCOL.md's default timings
	h := e.watchHealth()
	f := e.fake("echo")
	e.mustAnnounce(f)
	key := events.InstanceKey("echo", f.id)
	h.wait(t, f.id, events.Passing, time.Second)
	bustest.Eventually(t, 3*time.Second, func() error {
		if f.beats.Load() < 2 {
			return errors.New("waiting for heartbeats")
		}
		return nil
	})

	f.silent.Store(true)
	ev := h.wait(t, f.id, events.Critical, 3500*time.Millisecond+250*time.Millisecond)
	if ev.Previous != events.Passing || !strings.Contains(ev.Reason, "3 heartbeats missed") {
		t.Errorf("critical event %+v", ev)
	}
	e.waitStatus(key, events.Critical, 100*time.Millisecond)

	f.silent.Store(false)
	ev = h.wait(t, f.id, events.Passing, 2*time.Second)
	if ev.Previous != events.Critical {
		t.Errorf("recovery event %+v", ev)
	}
	e.waitStatus(key, events.Passing, 100*time.Millisecond)
}

func TestInstanceWithoutSubscriberGoesCritical(t *testing.T) {
	e := newEnv(t)
	e.startNode(discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond}}})
	h := e.watchHealth()
	id := uuid.NewString() // announced, but nothing answers its heartbeats
	e.request(subjects.Announce("echo"), fmt.Appendf(nil, `{"id":%q,"service":"echo","endpoints":[{"name":"say"}]}`, id))
	ev := h.wait(t, id, events.Critical, 2*time.Second)
	if !strings.Contains(ev.Reason, "no responders") {
		t.Errorf("reason %q does not say no one was there", ev.Reason)
	}
}

func TestDeregisterRemovesKey(t *testing.T) {
	e := newEnv(t)
	e.startNode(discovery.Config{})
	h := e.watchHealth()
	f := e.fake("echo")
	e.mustAnnounce(f)
	key := events.InstanceKey("echo", f.id)
	e.waitStatus(key, events.Passing, time.Second)

	start := time.Now()
	if err := e.nc.Publish(subjects.Deregister("echo"), fmt.Appendf(nil, `{"id":%q,"service":"echo","reason":"shutdown"}`, f.id)); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, time.Second, func() error {
		if _, err := e.record(key); !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("key still there: %v", err)
		}
		return nil
	})
	ev := h.wait(t, f.id, events.Deregistered, time.Second-time.Since(start))
	if ev.Previous != events.Passing || ev.Reason != "shutdown" {
		t.Errorf("deregistered event %+v", ev)
	}
	// Deregistering again is acknowledged: leaving twice is not an error.
	m := e.request(subjects.Deregister("echo"), fmt.Appendf(nil, `{"id":%q,"service":"echo"}`, f.id))
	if _, _, isErr := events.ReplyError(m); isErr {
		t.Errorf("second deregister: %s", m.Data)
	}
}

func TestBadInputRejected(t *testing.T) {
	e := newEnv(t)
	e.startNode(discovery.Config{})
	good := e.fake("echo")
	e.mustAnnounce(good)
	id := uuid.NewString()
	big := fmt.Appendf(nil, `{"id":%q,"service":"echo","endpoints":[{"name":"say"}],"metadata":{"pad":%q}}`, id, strings.Repeat("x", 70*1024))
	tests := []struct {
		name, subject, body, want string
	}{
		{"malformed JSON", subjects.Announce("echo"), `{"id":`, "malformed JSON"},
		{"not an object", subjects.Announce("echo"), `"hello"`, "malformed JSON"},
		{"empty", subjects.Announce("echo"), ``, "empty"},
		{"missing id", subjects.Announce("echo"), `{"service":"echo","endpoints":[{"name":"say"}]}`, "id is required"},
		{"non-UUID id", subjects.Announce("echo"), `{"id":"web-3","service":"echo","endpoints":[{"name":"say"}]}`, "UUID"},
		{"upper-case id", subjects.Announce("echo"), `{"id":"` + strings.ToUpper(id) + `","service":"echo","endpoints":[{"name":"say"}]}`, "lower case"},
		{"service differs from subject", subjects.Announce("echo"), `{"id":"` + id + `","service":"other","endpoints":[{"name":"say"}]}`, `differs from "echo"`},
		{"upper-case service in subject", subjects.Announce("Echo"), `{"id":"` + id + `","service":"Echo","endpoints":[{"name":"say"}]}`, "upper case"},
		{"upper-case service in body", subjects.Announce("echo"), `{"id":"` + id + `","service":"ECHO","endpoints":[{"name":"say"}]}`, "upper case"},
		{"wildcard service in subject", subjects.Announce("*"), `{"id":"` + id + `","service":"*","endpoints":[{"name":"say"}]}`, "wildcard"},
		{"wildcard service in body", subjects.Announce("echo"), `{"id":"` + id + `","service":"echo.>","endpoints":[{"name":"say"}]}`, "wildcard"},
		{"wildcard endpoint", subjects.Announce("echo"), `{"id":"` + id + `","service":"echo","endpoints":[{"name":"*"}]}`, "wildcard"},
		{"missing endpoints", subjects.Announce("echo"), `{"id":"` + id + `","service":"echo"}`, "endpoints is required"},
		{"weight out of range", subjects.Announce("echo"), `{"id":"` + id + `","service":"echo","endpoints":[{"name":"say"}],"weight":20000}`, "weight"},
		{"weight wrong type", subjects.Announce("echo"), `{"id":"` + id + `","service":"echo","endpoints":[{"name":"say"}],"weight":"heavy"}`, "weight"},
		{"capitalised key the schema refuses", subjects.Announce("echo"), `{"ID":"` + id + `","id":"` + id + `","service":"echo","endpoints":[{"name":"say"}],"Weight":1}`, ""},
		{"oversized payload", subjects.Announce("echo"), string(big), "exceeds the 65536-byte limit"},
		{"deregister bad id", subjects.Deregister("echo"), `{"id":"nope","service":"echo"}`, "UUID"},
		{"deregister service differs", subjects.Deregister("echo"), `{"id":"` + good.id + `","service":"other"}`, "differs"},
		{"deregister malformed", subjects.Deregister("echo"), `{`, "malformed JSON"},
	}
	before := e.keys()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := e.request(tt.subject, []byte(tt.body))
			code, text, isErr := events.ReplyError(m)
			if tt.want == "" && !isErr {
				// Go would read "Weight" as weight; the schema does not
				// know that key and ignores it, so the announce is fine:
				// both sets of rules agree there is nothing wrong.
				e.request(subjects.Deregister("echo"), fmt.Appendf(nil, `{"id":%q,"service":"echo"}`, id))
				return
			}
			if !isErr || code != 400 {
				t.Fatalf("got code %d (error reply %v), body %s; want 400", code, isErr, m.Data)
			}
			if !strings.Contains(text, tt.want) {
				t.Errorf("error %q does not name the problem (%q)", text, tt.want)
			}
			var body events.ErrorBody
			if err := json.Unmarshal(m.Data, &body); err != nil || body.Code != 400 || body.Error != text {
				t.Errorf("error body %s", m.Data)
			}
		})
	}
	if after := e.keys(); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("registry changed by bad input: %v -> %v", before, after)
	}
	// The node still serves.
	other := e.fake("echo")
	e.mustAnnounce(other)
	if m := e.request(subjects.DiscoveryServices(), []byte("{}")); !strings.Contains(string(m.Data), `"instances":2`) {
		t.Errorf("services after bad input: %s", m.Data)
	}
}

func (e *env) keys() []string {
	e.t.Helper()
	lister, err := e.kv.Instances.ListKeys(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	return keys
}

func TestRejectionsCounted(t *testing.T) {
	e := newEnv(t)
	var cfg discovery.Config
	cfg.Metrics = newMetricsSet()
	e.startNode(cfg)
	// Without a reply subject a rejection is still counted and logged.
	e.nc.Publish(subjects.Announce("echo"), []byte(`{bad`))
	e.nc.Publish(subjects.Announce("echo"), []byte(`{"id":"x","service":"echo","endpoints":[{"name":"a"}]}`))
	bustest.Eventually(t, 2*time.Second, func() error {
		text := metricsText(cfg.Metrics)
		for _, want := range []string{`hail_discovery_rejected_total{reason="malformed"} 1`, `hail_discovery_rejected_total{reason="invalid"} 1`} {
			if !strings.Contains(text, want) {
				return fmt.Errorf("metrics lack %s:\n%s", want, text)
			}
		}
		return nil
	})
}

func TestQueries(t *testing.T) {
	e := newEnv(t)
	e.startNode(discovery.Config{})
	var xs []*fake
	for range 3 {
		f := e.fake("x")
		e.mustAnnounce(f)
		xs = append(xs, f)
	}
	y := e.fake("com.example.y")
	e.mustAnnounce(y)

	var recs []events.InstanceRecord
	m := e.request(subjects.DiscoveryInstances(), []byte(`{"service":"x"}`))
	if err := json.Unmarshal(m.Data, &recs); err != nil {
		t.Fatalf("%s: %v", m.Data, err)
	}
	if len(recs) != 3 {
		t.Fatalf("got %d records for x, want 3: %s", len(recs), m.Data)
	}
	for _, r := range recs {
		if r.Service != "x" || r.Status != events.Passing {
			t.Errorf("record %+v", r)
		}
	}
	m = e.request(subjects.DiscoveryInstances(), []byte(`{"status":"critical"}`))
	if string(m.Data) != "[]" {
		t.Errorf("critical instances: %s, want []", m.Data)
	}
	m = e.request(subjects.DiscoveryInstances(), nil)
	if err := json.Unmarshal(m.Data, &recs); err != nil || len(recs) != 4 {
		t.Errorf("all instances: %s", m.Data)
	}
	var svcs []events.ServiceSummary
	m = e.request(subjects.DiscoveryServices(), []byte("{}"))
	if err := json.Unmarshal(m.Data, &svcs); err != nil {
		t.Fatal(err)
	}
	want := []events.ServiceSummary{{Service: "com.example.y", Instances: 1, Passing: 1}, {Service: "x", Instances: 3, Passing: 3}}
	if len(svcs) != 2 || svcs[0] != want[0] || svcs[1] != want[1] {
		t.Errorf("services = %+v, want %+v", svcs, want)
	}
	m = e.request(subjects.DiscoveryInstances(), []byte(`{"service_prefix":"com.example"}`))
	if err := json.Unmarshal(m.Data, &recs); err != nil || len(recs) != 1 || recs[0].Service != "com.example.y" {
		t.Errorf("service_prefix com.example: %s", m.Data)
	}
	for _, q := range []string{`{"service":"x.*"}`, `{"service_prefix":"x>"}`} {
		m = e.request(subjects.DiscoveryInstances(), []byte(q))
		if code, _, _ := events.ReplyError(m); code != 400 {
			t.Errorf("query %s: code %d, %s", q, code, m.Data)
		}
	}
}

func TestAnnounceAgainUpdatesWithoutEvent(t *testing.T) {
	e := newEnv(t)
	e.startNode(discovery.Config{})
	h := e.watchHealth()
	f := e.fake("echo")
	e.mustAnnounce(f)
	h.wait(t, f.id, events.Passing, time.Second)
	key := events.InstanceKey("echo", f.id)
	before, _ := e.kv.Instances.Get(context.Background(), key)

	// The same announce again writes nothing.
	e.mustAnnounce(f)
	after, _ := e.kv.Instances.Get(context.Background(), key)
	if after.Revision() != before.Revision() {
		t.Errorf("unchanged announce wrote KV: revision %d -> %d", before.Revision(), after.Revision())
	}
	// A changed one updates the record in place.
	e.request(subjects.Announce("echo"), fmt.Appendf(nil, `{"id":%q,"service":"echo","version":"2.0.0","endpoints":[{"name":"say"},{"name":"slow"}],"weight":0}`, f.id))
	r, err := e.record(key)
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
	e.startNode(discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond}, DeregisterAfter: 500 * time.Millisecond}})
	h := e.watchHealth()
	f := e.fake("echo")
	e.mustAnnounce(f)
	f.silent.Store(true)
	h.wait(t, f.id, events.Critical, 2*time.Second)
	ev := h.wait(t, f.id, events.Deregistered, 2*time.Second)
	if ev.Previous != events.Critical || !strings.Contains(ev.Reason, "critical for") {
		t.Errorf("removal event %+v", ev)
	}
	if _, err := e.record(events.InstanceKey("echo", f.id)); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("record still there: %v", err)
	}
}

// A node restarted with the KV intact resumes heartbeating the recorded
// instances without flapping them, and becomes their owner.
func TestRestartDoesNotFlap(t *testing.T) {
	e := newEnv(t)
	_, stop := e.startNode(discovery.Config{})
	var fs []*fake
	for range 5 {
		f := e.fake("echo")
		e.mustAnnounce(f)
		fs = append(fs, f)
	}
	h := e.watchHealth()
	stop()
	// The instances keep answering; the new node picks them up from KV.
	n2, _ := e.startNode(discovery.Config{})
	for _, f := range fs {
		key := events.InstanceKey("echo", f.id)
		bustest.Eventually(t, 3*time.Second, func() error {
			r, err := e.record(key)
			if err != nil {
				return err
			}
			if r.Node != n2.ID() {
				return fmt.Errorf("%s owned by %s, want %s", key, r.Node, n2.ID())
			}
			return nil
		})
	}
	beatsBefore := fs[0].beats.Load()
	bustest.Eventually(t, 5*time.Second, func() error {
		if fs[0].beats.Load() < beatsBefore+4 {
			return errors.New("waiting for four rounds of the new node")
		}
		return nil
	})
	h.none(t, events.Critical, events.Deregistered, events.Passing)
	for _, f := range fs {
		e.waitStatus(events.InstanceKey("echo", f.id), events.Passing, 100*time.Millisecond)
	}
}

// With nothing changing, the node writes nothing to hail_instances.
func TestQuietRegistryWritesNothing(t *testing.T) {
	e := newEnv(t)
	e.startNode(discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 50 * time.Millisecond, Timeout: 25 * time.Millisecond}}})
	var fs []*fake
	for range 10 {
		f := e.fake("echo")
		e.mustAnnounce(f)
		fs = append(fs, f)
	}
	seq := func() uint64 {
		st, err := e.kv.Instances.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st.(*jetstream.KeyValueBucketStatus).StreamInfo().State.LastSeq
	}
	first := seq()
	beats := fs[0].beats.Load()
	bustest.Eventually(t, 10*time.Second, func() error {
		if fs[0].beats.Load() < beats+40 {
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
	e.startNode(cfg)
	f := e.fake("echo")
	e.mustAnnounce(f)
	key := events.InstanceKey("echo", f.id)
	// One at a time: the bucket keeps one revision per key, so a watch
	// that falls behind sees only the last of quick successive puts.
	for i, bad := range []string{`not json`, `{"id":"x"}`, fmt.Sprintf(`{"id":%q,"service":"other","endpoints":[{"name":"a"}],"status":"passing"}`, f.id)} {
		if _, err := e.kv.Instances.Put(context.Background(), key, []byte(bad)); err != nil {
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
	if err := json.Unmarshal(m.Data, &recs); err != nil || len(recs) != 1 || recs[0].ID != f.id || recs[0].Status != events.Passing {
		t.Errorf("after garbage, instances = %s", m.Data)
	}
	other := e.fake("echo")
	e.mustAnnounce(other)
	// The next transition writes the last good record, changed, back
	// over the garbage.
	f.silent.Store(true)
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
	e := &env{t: t, url: s.ClientURL(), nc: nc, kv: bustest.Buckets(t, nc)}
	e.startNode(discovery.Config{})
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
	e.startNode(discovery.Config{})
	f := e.fake("echo")
	e.mustAnnounce(f)
	m := e.request(subjects.Announce("other"), fmt.Appendf(nil, `{"id":%q,"service":"other","endpoints":[{"name":"say"}]}`, f.id))
	code, text, isErr := events.ReplyError(m)
	if !isErr || code != 400 || !strings.Contains(text, `registered under service "echo"`) {
		t.Fatalf("reply %d %q, want a 400 naming service echo", code, text)
	}
	if _, err := e.record(events.InstanceKey("other", f.id)); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("record under the second service: %v", err)
	}
	e.waitStatus(events.InstanceKey("echo", f.id), events.Passing, time.Second)
}
