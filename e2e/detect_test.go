package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/proctest"
)

// region is nats, discovery and a router as processes, with echo
// processes added by echo.
type region struct {
	t   testing.TB
	url string
	nc  *nats.Conn
}

func startRegion(t testing.TB) *region {
	t.Helper()
	port := bustest.FreePort(t)
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	start(t, "nats", "nats", map[string]string{"HAIL_LISTEN": "127.0.0.1:" + strconv.Itoa(port), "HAIL_STORE_DIR": t.TempDir()})
	var nc *nats.Conn
	bustest.Eventually(t, time.Minute, func() error {
		c, err := nats.Connect(url)
		if err != nil {
			return err
		}
		nc = c
		return nil
	})
	t.Cleanup(nc.Close)
	env := map[string]string{"HAIL_NATS_URL": url, "HAIL_LOG_LEVEL": "warn"}
	d := start(t, "discovery", "discovery", env, "--http-addr", "127.0.0.1:"+strconv.Itoa(bustest.FreePort(t)))
	raddr := "127.0.0.1:" + strconv.Itoa(bustest.FreePort(t))
	r := start(t, "router", "router", env, "--http-addr", raddr)
	r.WaitReady(t, raddr)
	_ = d
	return &region{t: t, url: url, nc: nc}
}

// echo starts an echo process announcing version and returns it with its
// instance id, once it is passing.
func (r *region) echo(version string) (*proctest.Process, string) {
	r.t.Helper()
	p := start(r.t, "echo-"+version, "echo", map[string]string{"HAIL_NATS_URL": r.url, "HAIL_LOG_LEVEL": "warn", "HAIL_VERSION": version})
	var id string
	bustest.Eventually(r.t, time.Minute, func() error {
		if err := p.Exited(); err != nil {
			return err
		}
		recs, err := r.instances()
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if rec.Version == version && rec.Status == events.Passing {
				if rec.Conn == nil {
					return fmt.Errorf("%s announced no conn", rec.ID)
				}
				id = rec.ID
				return nil
			}
		}
		return fmt.Errorf("no passing echo %s", version)
	})
	return p, id
}

func (r *region) instances() ([]events.InstanceRecord, error) { return r.instancesOf("echo") }

func (r *region) instancesOf(service string) ([]events.InstanceRecord, error) {
	m, err := r.nc.Request(events.Subjects{}.DiscoveryInstances(), fmt.Appendf(nil, `{"service":%q}`, service), 2*time.Second)
	if err != nil {
		return nil, err
	}
	var recs []events.InstanceRecord
	if err := json.Unmarshal(m.Data, &recs); err != nil {
		return nil, fmt.Errorf("instances %s: %w", m.Data, err)
	}
	return recs, nil
}

// health delivers the health events of echo's instance id.
func (r *region) health(id string) <-chan events.HealthEvent { return r.healthOf("echo", id) }

// healthOf delivers the health events of service's instance id.
func (r *region) healthOf(service, id string) <-chan events.HealthEvent {
	return healthEvents(r.t, r.nc, service, id)
}

// healthEvents delivers the health events of service's instance id that
// nc hears, until the test ends.
func healthEvents(t testing.TB, nc *nats.Conn, service, id string) <-chan events.HealthEvent {
	t.Helper()
	ch := make(chan events.HealthEvent, 64)
	sub, err := nc.Subscribe(events.Subjects{}.Health(service, id), func(m *nats.Msg) {
		if ev, err := events.DecodeHealthEvent(m.Data); err == nil {
			select {
			case ch <- ev:
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return ch
}

func waitStatus(t testing.TB, ch <-chan events.HealthEvent, status events.Status, within time.Duration) events.HealthEvent {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case ev := <-ch:
			if ev.Status == status {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event within %v", status, within)
		}
	}
}

// routing sends requests on a route subject from its own goroutines until
// finish, and keeps every failure and the slowest answer.
type routing struct {
	stop     atomic.Bool
	sent     atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	failures []routeFailure
	slowest  time.Duration
}

type routeFailure struct {
	sent time.Time
	took time.Duration
	err  string
}

func (r *region) route(subject string, workers int, timeout time.Duration) *routing {
	r.t.Helper()
	caller, err := nats.Connect(r.url)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(caller.Close)
	l := &routing{}
	for range workers {
		l.wg.Go(func() {
			for !l.stop.Load() {
				at := time.Now()
				m, err := caller.Request(subject, []byte("hi"), timeout)
				took := time.Since(at)
				l.sent.Add(1)
				text := ""
				if err != nil {
					text = err.Error()
				} else if code, msg, isErr := events.ReplyError(m); isErr {
					text = fmt.Sprintf("%d %s", code, msg)
				}
				l.mu.Lock()
				l.slowest = max(l.slowest, took)
				if text != "" {
					l.failures = append(l.failures, routeFailure{at, took, text})
				}
				l.mu.Unlock()
			}
		})
	}
	return l
}

// more waits until n more requests were sent.
func (l *routing) more(t testing.TB, n int64) {
	t.Helper()
	after := l.sent.Load()
	bustest.Eventually(t, 30*time.Second, func() error {
		if l.sent.Load() < after+n {
			return errors.New("routing")
		}
		return nil
	})
}

func (l *routing) finish() ([]routeFailure, time.Duration) {
	l.stop.Store(true)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failures, l.slowest
}

// disconnectedWithin fails t unless ev came within budget of the kill for
// a closed connection.
func disconnectedWithin(t testing.TB, ev events.HealthEvent, took, budget time.Duration) {
	t.Helper()
	t.Logf("%s critical %v after kill -9: %s", ev.Service, took.Round(time.Millisecond), ev.Reason)
	if took > budget || !strings.HasPrefix(ev.Reason, "disconnected:") {
		t.Errorf("%s critical %v after the kill, reason %q; want within %v, disconnected", ev.Service, took, ev.Reason, budget)
	}
}

// An echo process killed with kill -9 while requests are routed to it and
// to two others: discovery hears its connection close and marks it
// critical within a second (three missed heartbeats take 3 s), no routed
// request sent after that fails, and none waits for its timeout: what was
// inside the killed process (echo's route has no retry_on_timeout) is
// answered 504 at the critical event (PROTOCOL v1.4).
func TestKilledProcessCriticalAtOnce(t *testing.T) {
	r := startRegion(t)
	victim, vid := r.echo("1.0.1")
	r.echo("1.0.2")
	r.echo("1.0.3")
	hev := r.health(vid)
	load := r.route(events.Subjects{}.Route("echo", "say"), 8, 10*time.Second)
	load.more(t, 200)
	killed := time.Now()
	if err := syscall.Kill(victim.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ev := waitStatus(t, hev, events.Critical, 10*time.Second)
	seen := time.Now()
	disconnectedWithin(t, ev, seen.Sub(killed), time.Second)
	load.more(t, 200)
	failures, slowest := load.finish()
	for _, f := range failures {
		// A request the process had when it died may have been acted on:
		// its 504 comes at the critical event, not after the route's 5 s.
		// One sent once the owner's critical event is out never fails.
		switch {
		case f.sent.After(seen):
			t.Errorf("a request sent %v after the critical event failed: %s", f.sent.Sub(seen).Round(time.Millisecond), f.err)
		case !strings.Contains(f.err, "connection closed"):
			t.Errorf("a request sent %v after the kill failed after %v, not at the critical event: %s", f.sent.Sub(killed).Round(time.Millisecond), f.took, f.err)
		default:
			t.Logf("a request inside the killed process, answered after %v: %s", f.took.Round(time.Millisecond), f.err)
		}
	}
	t.Logf("slowest routed request %v", slowest.Round(time.Millisecond))
	victim.Kill()
}

// agent starts an agent process that registers one instance of each
// service (fixed ids), bridged to an HTTP server of its own, and returns
// it with the ids by service once each is passing with its conn.
func (r *region) agent(services ...string) (*proctest.Process, map[string]string) {
	r.t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	r.t.Cleanup(srv.Close)
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	ids := map[string]string{}
	var cfg strings.Builder
	cfg.WriteString("services:\n")
	for _, s := range services {
		ids[s] = uuid.NewString()
		fmt.Fprintf(&cfg, "  - {name: %s, id: %s, address: %s, port: %s, bridge: {endpoints: [{name: http, path: \"*\"}]}}\n", s, ids[s], host, port)
	}
	file := filepath.Join(r.t.TempDir(), "agent.yaml")
	if err := os.WriteFile(file, []byte(cfg.String()), 0o644); err != nil {
		r.t.Fatal(err)
	}
	p := start(r.t, "agent", "agent", map[string]string{"HAIL_NATS_URL": r.url, "HAIL_LOG_LEVEL": "warn", "HAIL_DATA_DIR": r.t.TempDir(),
		"HAIL_HTTP_ADDR": "127.0.0.1:" + strconv.Itoa(bustest.FreePort(r.t)), "HAIL_DNS_ADDR": "127.0.0.1:0"}, "--config", file)
	for s, id := range ids {
		bustest.Eventually(r.t, time.Minute, func() error {
			if err := p.Exited(); err != nil {
				return err
			}
			recs, err := r.instancesOf(s)
			if err != nil {
				return err
			}
			for _, rec := range recs {
				if rec.ID == id && rec.Status == events.Passing && rec.Conn != nil {
					return nil
				}
			}
			return fmt.Errorf("%s of the agent not passing with its conn", s)
		})
	}
	return p, ids
}

// putRoute writes service's route in hail_config.
func (r *region) putRoute(service, route string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := bus.OpenBuckets(ctx, r.nc, slog.New(slog.DiscardHandler))
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := b.Config.Put(ctx, events.RouteConfigKey(service), []byte(route)); err != nil {
		r.t.Fatal(err)
	}
}

// An agent process killed with kill -9 while requests are routed to its
// web instance and another agent's: each of its services is critical
// within a second, and not one routed request fails, nor waits for a
// timeout: web's route says retry_on_timeout, so what was inside the
// killed agent is tried again on the other at the critical event.
func TestKilledAgentCriticalAtOnce(t *testing.T) {
	r := startRegion(t)
	// 30 s for the call, 10 s for an attempt: a request that waited for
	// one shows.
	r.putRoute("web", `{"timeout_ms":30000,"retry_on_timeout":true}`)
	victim, ids := r.agent("web", "api")
	r.agent("web")
	hev := map[string]<-chan events.HealthEvent{}
	for s, id := range ids {
		hev[s] = r.healthOf(s, id)
	}
	load := r.route(events.Subjects{}.Route("web", "http"), 8, time.Minute)
	load.more(t, 200)
	killed := time.Now()
	if err := syscall.Kill(victim.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for _, ch := range hev {
		ev := waitStatus(t, ch, events.Critical, 10*time.Second)
		disconnectedWithin(t, ev, time.Since(killed), time.Second)
	}
	load.more(t, 200)
	failures, slowest := load.finish()
	for _, f := range failures {
		t.Errorf("a request sent %v after the kill failed after %v: %s", f.sent.Sub(killed).Round(time.Millisecond), f.took.Round(time.Millisecond), f.err)
	}
	if slowest >= 10*time.Second {
		t.Errorf("a routed request took %v: it waited for an attempt's timeout", slowest)
	}
	t.Logf("%d routed requests, slowest %v", load.sent.Load(), slowest.Round(time.Millisecond))
	victim.Kill()
}

// A process stopped with SIGSTOP keeps its connection: its heartbeats
// find it critical, and it passes again once it runs again.
func TestStoppedProcessCriticalByHeartbeats(t *testing.T) {
	r := startRegion(t)
	p, id := r.echo("1.0.1")
	ch := r.health(id)
	if err := syscall.Kill(p.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	ev := waitStatus(t, ch, events.Critical, 30*time.Second)
	if err := syscall.Kill(p.PID(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if ev.Reason == "" || ev.Reason[:min(13, len(ev.Reason))] == "disconnected:" {
		t.Errorf("critical for %q, want missed heartbeats", ev.Reason)
	}
	waitStatus(t, ch, events.Passing, 30*time.Second)
}
