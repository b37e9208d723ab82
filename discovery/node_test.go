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
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/internal/regiontest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var subjects events.Subjects

// env is a region on a single server (regiontest) with discovery's own
// helpers.
type env struct{ *regiontest.Region }

func newEnv(t *testing.T) *env { return &env{regiontest.New(t)} }

// envOn is an env over the test's own connection to url.
func envOn(t *testing.T, url string, nc *nats.Conn) *env {
	return &env{&regiontest.Region{T: t, URL: url, NC: nc, KV: bustest.Buckets(t, nc)}}
}

// fake is an instance that speaks PROTOCOL.md by hand over the test's
// connection; the test announces it.
func (e *env) fake(service string) *fakeinst.Instance {
	e.T.Helper()
	return fakeinst.Start(e.T, e.URL, fakeinst.Options{Service: service, Conn: e.NC, Manual: true})
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
	e.T.Helper()
	m, err := e.NC.Request(subject, data, 2*time.Second)
	if err != nil {
		e.T.Fatalf("request %s: %v", subject, err)
	}
	return m
}

func (e *env) mustAnnounce(f *fakeinst.Instance) {
	e.T.Helper()
	m := e.request(subjects.Announce(f.Service()), f.AnnounceData())
	var ack events.Ack
	if err := json.Unmarshal(m.Data, &ack); err != nil || !ack.OK || ack.ID != f.ID {
		e.T.Fatalf("announce ack %s (%v), headers %v", m.Data, err, m.Header)
	}
}

func (e *env) waitStatus(key string, want events.Status, timeout time.Duration) {
	e.T.Helper()
	bustest.Eventually(e.T, timeout, func() error {
		r, err := e.Record(key)
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
	e.T.Helper()
	h := &healthEvents{ch: make(chan events.HealthEvent, 10000)}
	sub, err := e.NC.Subscribe(subjects.HealthAll(), func(m *nats.Msg) {
		var ev events.HealthEvent
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			e.T.Errorf("health event %s: %v", m.Data, err)
			return
		}
		if want := subjects.Health(ev.Service, ev.ID); m.Subject != want {
			e.T.Errorf("health event on %s, want %s", m.Subject, want)
		}
		h.ch <- ev
	})
	if err != nil {
		e.T.Fatal(err)
	}
	e.T.Cleanup(func() { sub.Unsubscribe() })
	e.NC.Flush()
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
	n, _ := e.StartNode(discovery.Config{})
	h := e.watchHealth()
	f := e.fake("echo")
	start := time.Now()
	if err := e.NC.Publish(subjects.Announce("echo"), f.AnnounceData()); err != nil {
		t.Fatal(err)
	}
	key := events.InstanceKey("echo", f.ID)
	e.waitStatus(key, events.Passing, time.Second)
	ev := h.wait(t, f.ID, events.Passing, time.Second-time.Since(start))
	if ev.Previous != "" || ev.Service != "echo" || ev.Node != n.ID() {
		t.Errorf("registration event %+v", ev)
	}
	r, _ := e.Record(key)
	if r.Node != n.ID() || r.RegisteredAt.IsZero() || r.UpdatedAt.IsZero() || r.Version != "1.0.0" || r.Weight != 100 {
		t.Errorf("record %+v", r)
	}
	// Its first heartbeat follows within an interval.
	bustest.Eventually(t, 2*time.Second, func() error {
		if f.Beats() == 0 {
			return errors.New("no heartbeat yet")
		}
		return nil
	})
}

func TestMissedHeartbeatsAndRecovery(t *testing.T) {
	e := newEnv(t)
	e.StartNode(discovery.Config{}) // PROTOCOL.md's default timings
	h := e.watchHealth()
	f := e.fake("echo")
	e.mustAnnounce(f)
	key := events.InstanceKey("echo", f.ID)
	h.wait(t, f.ID, events.Passing, time.Second)
	bustest.Eventually(t, 3*time.Second, func() error {
		if f.Beats() < 2 {
			return errors.New("waiting for heartbeats")
		}
		return nil
	})

	f.Silence()
	ev := h.wait(t, f.ID, events.Critical, 3500*time.Millisecond+250*time.Millisecond)
	if ev.Previous != events.Passing || !strings.Contains(ev.Reason, "3 heartbeats missed") {
		t.Errorf("critical event %+v", ev)
	}
	e.waitStatus(key, events.Critical, 100*time.Millisecond)

	f.Speak()
	ev = h.wait(t, f.ID, events.Passing, 2*time.Second)
	if ev.Previous != events.Critical {
		t.Errorf("recovery event %+v", ev)
	}
	e.waitStatus(key, events.Passing, 100*time.Millisecond)
}

func TestInstanceWithoutSubscriberGoesCritical(t *testing.T) {
	e := newEnv(t)
	e.StartNode(discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond}}})
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
	e.StartNode(discovery.Config{})
	h := e.watchHealth()
	f := e.fake("echo")
	e.mustAnnounce(f)
	key := events.InstanceKey("echo", f.ID)
	e.waitStatus(key, events.Passing, time.Second)

	start := time.Now()
	if err := e.NC.Publish(subjects.Deregister("echo"), fmt.Appendf(nil, `{"id":%q,"service":"echo","reason":"shutdown"}`, f.ID)); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, time.Second, func() error {
		if _, err := e.Record(key); !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("key still there: %v", err)
		}
		return nil
	})
	ev := h.wait(t, f.ID, events.Deregistered, time.Second-time.Since(start))
	if ev.Previous != events.Passing || ev.Reason != "shutdown" {
		t.Errorf("deregistered event %+v", ev)
	}
	// Deregistering again is acknowledged: leaving twice is not an error.
	m := e.request(subjects.Deregister("echo"), fmt.Appendf(nil, `{"id":%q,"service":"echo"}`, f.ID))
	if _, _, isErr := events.ReplyError(m); isErr {
		t.Errorf("second deregister: %s", m.Data)
	}
}

func TestBadInputRejected(t *testing.T) {
	e := newEnv(t)
	e.StartNode(discovery.Config{})
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
		{"deregister service differs", subjects.Deregister("echo"), `{"id":"` + good.ID + `","service":"other"}`, "differs"},
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
	e.T.Helper()
	lister, err := e.KV.Instances.ListKeys(context.Background())
	if err != nil {
		e.T.Fatal(err)
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
	e.StartNode(cfg)
	// Without a reply subject a rejection is still counted and logged.
	e.NC.Publish(subjects.Announce("echo"), []byte(`{bad`))
	e.NC.Publish(subjects.Announce("echo"), []byte(`{"id":"x","service":"echo","endpoints":[{"name":"a"}]}`))
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
	e.StartNode(discovery.Config{})
	var xs []*fakeinst.Instance
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
