package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

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

func (r *region) instances() ([]events.InstanceRecord, error) {
	m, err := r.nc.Request(events.Subjects{}.DiscoveryInstances(), []byte(`{"service":"echo"}`), 2*time.Second)
	if err != nil {
		return nil, err
	}
	var recs []events.InstanceRecord
	if err := json.Unmarshal(m.Data, &recs); err != nil {
		return nil, fmt.Errorf("instances %s: %w", m.Data, err)
	}
	return recs, nil
}

// health delivers the health events of id.
func (r *region) health(id string) <-chan events.HealthEvent {
	r.t.Helper()
	ch := make(chan events.HealthEvent, 64)
	sub, err := r.nc.Subscribe(events.Subjects{}.Health("echo", id), func(m *nats.Msg) {
		if ev, err := events.DecodeHealthEvent(m.Data); err == nil {
			select {
			case ch <- ev:
			default:
			}
		}
	})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := r.nc.Flush(); err != nil {
		r.t.Fatal(err)
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

// An echo process killed with kill -9 while requests are routed to it and
// to two others: discovery hears its connection close and marks it
// critical within a second (three missed heartbeats take 3 s), and no
// routed request sent after that fails.
func TestKilledProcessCriticalAtOnce(t *testing.T) {
	r := startRegion(t)
	victim, vid := r.echo("1.0.1")
	r.echo("1.0.2")
	r.echo("1.0.3")
	hev := r.health(vid)

	caller, err := nats.Connect(r.url)
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	var stop atomic.Bool
	var mu sync.Mutex
	type failure struct {
		sent time.Time
		err  string
	}
	var failures []failure
	var sent atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for !stop.Load() {
				at := time.Now()
				m, err := caller.Request(events.Subjects{}.Route("echo", "say"), []byte("hi"), 10*time.Second)
				sent.Add(1)
				text := ""
				if err != nil {
					text = err.Error()
				} else if code, msg, isErr := events.ReplyError(m); isErr {
					text = fmt.Sprintf("%d %s", code, msg)
				}
				if text != "" {
					mu.Lock()
					failures = append(failures, failure{at, text})
					mu.Unlock()
				}
			}
		})
	}
	bustest.Eventually(t, 30*time.Second, func() error {
		if sent.Load() < 200 {
			return errors.New("routing warming up")
		}
		return nil
	})
	killed := time.Now()
	if err := syscall.Kill(victim.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ev := waitStatus(t, hev, events.Critical, 10*time.Second)
	seen := time.Now()
	took := seen.Sub(killed)
	t.Logf("critical %v after kill -9: %s", took.Round(time.Millisecond), ev.Reason)
	if took > time.Second || len(ev.Reason) < 13 || ev.Reason[:13] != "disconnected:" {
		t.Errorf("critical %v after the kill, reason %q; want within 1 s, disconnected", took, ev.Reason)
	}
	after := sent.Load()
	bustest.Eventually(t, 30*time.Second, func() error {
		if sent.Load() < after+200 {
			return errors.New("routing on")
		}
		return nil
	})
	stop.Store(true)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for _, f := range failures {
		// A request delivered to the process before the server saw its
		// connection close is lost (a 504, as PROTOCOL v1 and v1.4 say):
		// a kill takes a few ms to close the socket, and until then the
		// server hands the process what it is sent. One sent once the
		// owner's critical event is out never fails.
		if f.sent.After(seen) {
			t.Errorf("a request sent %v after the critical event failed: %s", f.sent.Sub(seen).Round(time.Millisecond), f.err)
		} else {
			t.Logf("a request sent %v after the kill, before the critical event, was lost: %s", f.sent.Sub(killed).Round(time.Millisecond), f.err)
		}
	}
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
