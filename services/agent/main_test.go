package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/regiontest"
	"github.com/hailsd/hail/internal/testlog"
)

var subjects events.Subjects

// app is a real HTTP service whose /health can be made to fail.
type app struct {
	srv  *httptest.Server
	code atomic.Int32
}

func newApp(t *testing.T) *app {
	a := &app{}
	a.code.Store(http.StatusOK)
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(a.code.Load()))
		fmt.Fprintf(w, "health %d", a.code.Load())
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *app) hostPort() (string, int) {
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(a.srv.URL, "http://"))
	var p int
	fmt.Sscan(port, &p)
	return host, p
}

// health watches health events of a service.
type healthWatch struct{ ch chan events.HealthEvent }

func watchHealth(t *testing.T, nc *nats.Conn) *healthWatch {
	h := &healthWatch{ch: make(chan events.HealthEvent, 1000)}
	sub, err := nc.Subscribe(subjects.HealthAll(), func(m *nats.Msg) {
		var ev events.HealthEvent
		if json.Unmarshal(m.Data, &ev) == nil {
			h.ch <- ev
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	_ = nc.Flush()
	return h
}

func (h *healthWatch) next(t *testing.T, service string, within time.Duration) events.HealthEvent {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case ev := <-h.ch:
			if ev.Service == service {
				return ev
			}
		case <-deadline:
			t.Fatalf("no health event of %s within %v", service, within)
		}
	}
}

func writeConfig(t *testing.T, path, text string) {
	t.Helper()
	bustest.ReplaceFile(t, path, text)
}

// region runs a discovery node with 200 ms heartbeats.
func region(t *testing.T) *regiontest.Region {
	r := regiontest.New(t)
	r.StartNode(discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 200 * time.Millisecond, Timeout: 100 * time.Millisecond}}})
	return r
}

func startAgent(t *testing.T, r *regiontest.Region, file string) (*testlog.Buffer, context.CancelFunc, chan error) {
	t.Helper()
	out := &testlog.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--config", file, "--nats-url", r.URL, "--heartbeat-interval", "200ms", "--http-addr", "", "--dns-addr", "", "--data-dir", t.TempDir()}, func(string) string { return "" }, out)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("agent did not stop")
		}
	})
	return out, cancel, done
}

func instanceOf(t *testing.T, r *regiontest.Region, service string) (events.InstanceRecord, bool) {
	t.Helper()
	for _, rec := range r.Instances() {
		if rec.Service == service {
			return rec, true
		}
	}
	return events.InstanceRecord{}, false
}

// The agent registers an HTTP service with its address, port, tags and
// checks; a failing check turns the record and a health event critical
// and back; SIGTERM (the context ending) deregisters it.
func TestAgentRegistersChecksAndDeregisters(t *testing.T) {
	r := region(t)
	a := newApp(t)
	host, port := a.hostPort()
	file := filepath.Join(t.TempDir(), "agent.yaml")
	writeConfig(t, file, fmt.Sprintf(`services:
  - name: web
    address: %s
    port: %d
    version: 1.0.0
    tags: [v1, primary]
    checks:
      - {name: health, http: "%s/health", interval: 200ms, timeout: 100ms}
      - {name: port, tcp: "%s:%d", interval: 200ms}
`, host, port, a.srv.URL, host, port))
	h := watchHealth(t, r.NC)
	_, cancel, done := startAgent(t, r, file)

	ev := h.next(t, "web", 5*time.Second)
	if ev.Status != events.Passing || ev.Previous != "" {
		t.Fatalf("first event %+v, want registered passing", ev)
	}
	rec, ok := instanceOf(t, r, "web")
	if !ok || rec.Address != host || int(rec.Port) != port || len(rec.Tags) != 2 || len(rec.Checks) != 2 || rec.Version != "1.0.0" {
		t.Fatalf("record %+v", rec)
	}

	start := time.Now()
	a.code.Store(http.StatusServiceUnavailable)
	ev = h.next(t, "web", 200*time.Millisecond+time.Second+500*time.Millisecond)
	if ev.Status != events.Critical {
		t.Fatalf("after /health 503: %+v", ev)
	}
	t.Logf("check flip to a critical event in %v", time.Since(start).Round(time.Millisecond))
	bustest.Eventually(t, 2*time.Second, func() error {
		rec, _ := instanceOf(t, r, "web")
		for _, c := range rec.Checks {
			if c.Name == "health" && c.Status == events.Critical && strings.Contains(c.Output, "503") {
				return nil
			}
		}
		return fmt.Errorf("record checks %+v", rec.Checks)
	})
	a.code.Store(http.StatusTooManyRequests)
	if ev = h.next(t, "web", 2*time.Second); ev.Status != events.Warning {
		t.Fatalf("after /health 429: %+v", ev)
	}
	a.code.Store(http.StatusOK)
	if ev = h.next(t, "web", 2*time.Second); ev.Status != events.Passing {
		t.Fatalf("after /health 200: %+v", ev)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not stop")
	}
	if ev = h.next(t, "web", 2*time.Second); ev.Status != events.Deregistered {
		t.Fatalf("after stop: %+v", ev)
	}
	if _, ok := instanceOf(t, r, "web"); ok {
		t.Error("record left after the agent stopped")
	}
}

// A service whose check fails from the start registers critical, never
// passing first.
func TestAgentRegistersCriticalFirst(t *testing.T) {
	r := region(t)
	a := newApp(t)
	a.code.Store(http.StatusInternalServerError)
	host, port := a.hostPort()
	file := filepath.Join(t.TempDir(), "agent.yaml")
	writeConfig(t, file, fmt.Sprintf("services:\n  - name: web\n    address: %s\n    port: %d\n    checks:\n      - {name: health, http: \"%s/\", interval: 200ms}\n", host, port, a.srv.URL))
	h := watchHealth(t, r.NC)
	startAgent(t, r, file)
	ev := h.next(t, "web", 5*time.Second)
	if ev.Status != events.Critical || ev.Previous != "" {
		t.Fatalf("first event %+v, want registered critical", ev)
	}
	select {
	case ev := <-h.ch:
		t.Fatalf("another event %+v while the check keeps failing", ev)
	case <-time.After(time.Second):
	}
}

// The config file is followed: a service added registers within 3 s, one
// removed deregisters, an invalid edit is refused naming the key and the
// running services stay.
func TestAgentFollowsConfigFile(t *testing.T) {
	r := region(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	svc := func(name string) string {
		return fmt.Sprintf("  - name: %s\n    address: 127.0.0.1\n    checks:\n      - {name: port, tcp: %q, interval: 200ms}\n", name, l.Addr().String())
	}
	file := filepath.Join(t.TempDir(), "agent.yaml")
	writeConfig(t, file, "services:\n"+svc("alpha"))
	h := watchHealth(t, r.NC)
	out, _, _ := startAgent(t, r, file)
	if ev := h.next(t, "alpha", 5*time.Second); ev.Status != events.Passing {
		t.Fatalf("alpha: %+v", ev)
	}

	start := time.Now()
	writeConfig(t, file, "services:\n"+svc("alpha")+svc("beta"))
	if ev := h.next(t, "beta", 3*time.Second); ev.Status != events.Passing {
		t.Fatalf("beta: %+v", ev)
	}
	t.Logf("an added service registered %v after the edit", time.Since(start).Round(time.Millisecond))

	writeConfig(t, file, "services:\n"+svc("beta"))
	if ev := h.next(t, "alpha", 3*time.Second); ev.Status != events.Deregistered {
		t.Fatalf("alpha after removal: %+v", ev)
	}

	writeConfig(t, file, "services:\n"+svc("beta")+"  - name: Bad!\n    address: 127.0.0.1\n")
	bustest.Eventually(t, 5*time.Second, func() error {
		if _, ok := out.Line("services[1].name"); !ok {
			return fmt.Errorf("no log line naming services[1].name")
		}
		return nil
	})
	if _, ok := instanceOf(t, r, "beta"); !ok {
		t.Error("beta gone after a refused edit")
	}
}

// The TTL API: a ttl check is critical until reported; pass, warn and fail
// reach the record; unknown service or check is 404, a check that is not
// ttl 400; GET /v1/checks lists every check.
func TestAgentTTLAPI(t *testing.T) {
	r := region(t)
	file := filepath.Join(t.TempDir(), "agent.yaml")
	writeConfig(t, file, "http:\n  addr: 127.0.0.1:0\nservices:\n  - name: app\n    address: 127.0.0.1\n    checks:\n      - {name: beat, ttl: 2s}\n      - {name: port, tcp: \"127.0.0.1:1\", interval: 1s}\n")
	port := bustest.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	h := watchHealth(t, r.NC)
	out := &testlog.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--config", file, "--nats-url", r.URL, "--http-addr", addr, "--dns-addr", "", "--data-dir", t.TempDir(), "--heartbeat-interval", "200ms"}, func(string) string { return "" }, out)
	}()
	defer func() { cancel(); <-done }()
	if ev := h.next(t, "app", 5*time.Second); ev.Status != events.Critical {
		t.Fatalf("first event %+v", ev)
	}
	put := func(path, body string) int {
		req, _ := http.NewRequest(http.MethodPut, "http://"+addr+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for path, want := range map[string]int{
		"/v1/check/nosuch/beat/pass": 404, "/v1/check/app/nosuch/pass": 404, "/v1/check/app/port/pass": 400, "/v1/check/app/beat/maybe": 400,
	} {
		if got := put(path, ""); got != want {
			t.Errorf("PUT %s: %d, want %d", path, got, want)
		}
	}
	if got := put("/v1/check/app/beat/warn", "queue deep"); got != 200 {
		t.Fatalf("warn: %d", got)
	}
	resp, err := http.Get("http://" + addr + "/v1/checks")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var checks map[string][]events.CheckResult
	if err := json.Unmarshal(body, &checks); err != nil || len(checks["app"]) != 2 {
		t.Fatalf("GET /v1/checks: %s (%v)", body, err)
	}
	for _, c := range checks["app"] {
		if c.Name == "beat" && (c.Status != events.Warning || c.Output != "queue deep") {
			t.Errorf("beat after warn: %+v", c)
		}
	}
	bustest.Eventually(t, 3*time.Second, func() error {
		rec, _ := instanceOf(t, r, "app")
		for _, c := range rec.Checks {
			if c.Name == "beat" && c.Status == events.Warning {
				return nil
			}
		}
		return fmt.Errorf("record checks %+v", rec.Checks)
	})
}

// A check whose output changes every round while its status does not
// costs no KV write.
func TestAgentOutputChangesWriteNothing(t *testing.T) {
	r := region(t)
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "request %d at %s", n.Add(1), time.Now())
	}))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "agent.yaml")
	writeConfig(t, file, fmt.Sprintf("services:\n  - name: web\n    address: 127.0.0.1\n    checks:\n      - {name: health, http: %q, interval: 100ms}\n", srv.URL))
	h := watchHealth(t, r.NC)
	startAgent(t, r, file)
	h.next(t, "web", 5*time.Second)
	rec, _ := instanceOf(t, r, "web")
	entry, err := r.KV.Instances.Get(t.Context(), events.InstanceKey("web", rec.ID))
	if err != nil {
		t.Fatal(err)
	}
	seen := n.Load()
	bustest.Eventually(t, 10*time.Second, func() error {
		if got := n.Load(); got < seen+20 {
			return fmt.Errorf("%d probes since, waiting for 20", got-seen)
		}
		return nil
	})
	again, err := r.KV.Instances.Get(t.Context(), events.InstanceKey("web", rec.ID))
	if err != nil {
		t.Fatal(err)
	}
	if again.Revision() != entry.Revision() {
		t.Errorf("20 probes with new output moved the record from revision %d to %d", entry.Revision(), again.Revision())
	}
}

// --print-config shows no check's credentials (a URL's user information,
// an Authorization header) nor the bridge's, and an invalid check URL is
// refused without its password in the error.
func TestPrintConfigRedactsChecks(t *testing.T) {
	file := filepath.Join(t.TempDir(), "agent.yaml")
	writeConfig(t, file, `
services:
  - name: web
    address: 127.0.0.1
    port: 8080
    bridge:
      base_url: http://bridge:br1dge@127.0.0.1:8080
    checks:
      - name: health
        http: http://bob:hunter2@127.0.0.1:8080/health
        header:
          Authorization: ["Bearer b34rer"]
          X-Consul-Token: ["c0nsul"]
        interval: 1s
`)
	var out strings.Builder
	if err := run(t.Context(), []string{"--config", file, "--print-config"}, func(string) string { return "" }, &out); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"br1dge", "hunter2", "b34rer", "c0nsul"} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("--print-config shows %q:\n%s", secret, out.String())
		}
	}
	if !strings.Contains(out.String(), "REDACTED") {
		t.Errorf("--print-config redacts nothing:\n%s", out.String())
	}
	writeConfig(t, file, `
services:
  - name: web
    address: 127.0.0.1
    port: 8080
    checks:
      - name: health
        http: ftp://bob:hunter2@127.0.0.1:8080/health
        interval: 1s
`)
	err := run(t.Context(), []string{"--config", file, "--print-config"}, func(string) string { return "" }, io.Discard)
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("an ftp check URL: %v", err)
	}
}
