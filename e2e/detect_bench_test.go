package e2e

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/internal/proctest"
)

// BenchmarkDetectKill is PROTOCOL v1.4's budget measured: 5 echo
// processes behind a router with 16 routed requests in flight at all
// times; 20 times, one is killed with kill -9 (a fresh one started after
// each), timing its critical event and the last request the router sent
// it, and counting the routed requests that failed, that waited for a
// timeout, and that were sent to a killed instance after its critical
// event. Once on echo's default route (no retry_on_timeout: what is
// inside a killed process is answered 504 at its critical event), once
// with retry_on_timeout (it is tried again elsewhere). Then 1,000
// instances on one connection, which is closed: the time until all 1,000
// are critical. Run with -benchtime=1x (each run does every kill):
//
//	go test -run '^$' -bench BenchmarkDetectKill -benchtime=1x ./e2e/
func BenchmarkDetectKill(b *testing.B) {
	b.Run("route=default", func(b *testing.B) { detectKills(b, "") })
	// 15 s for the call, 5 s for an attempt, as the default route's.
	b.Run("route=retry_on_timeout", func(b *testing.B) { detectKills(b, `{"timeout_ms":15000,"retry_on_timeout":true}`) })
	b.Run("one_conn_1000", detectOneConn)
}

// detectKills kills echo processes under routed load (echo's route set to
// route unless empty).
func detectKills(b *testing.B, route string) {
	const kills, procs, inflight = 20, 5, 16
	b.Logf("load average at start: %s", loadAverage())
	r := startRegion(b)
	if route != "" {
		r.putRoute("echo", route)
	}
	type echo struct {
		p    *proctest.Process
		id   string
		conn events.Conn
	}
	var live []echo
	version := 0
	add := func() {
		version++
		p, id := r.echo(fmt.Sprintf("1.0.%d", version))
		recs, err := r.instances()
		if err != nil {
			b.Fatal(err)
		}
		for _, rec := range recs {
			if rec.ID == id {
				live = append(live, echo{p, id, *rec.Conn})
			}
		}
	}
	for range procs {
		add()
	}
	caller, err := nats.Connect(r.url)
	if err != nil {
		b.Fatal(err)
	}
	defer caller.Close()
	// An observer of the subjects the router sends each instance on sees
	// the last request sent to a killed one. Being a subscriber, it hides
	// from the server that nobody else listens there once the process's
	// connection is closed; from the server's own disconnect advisory on,
	// it answers what the server would without it, no responders. What
	// it sees before the advisory reached the process too (and the router
	// must end it at the critical event).
	var mu sync.Mutex
	lastTo := map[string]time.Time{}
	advised := map[string]bool{}
	critical := map[string]bool{}
	victims := map[events.Conn]string{}
	var reachedAfter atomic.Int64
	adv, err := caller.Subscribe(events.DisconnectAll, func(m *nats.Msg) {
		if d, err := events.DecodeDisconnect(m.Data); err == nil {
			mu.Lock()
			if id, ok := victims[d.Conn]; ok {
				advised[id] = true
			}
			mu.Unlock()
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer adv.Unsubscribe()
	obs, err := caller.Subscribe(events.Subjects{}.Inst("*", ">"), func(m *nats.Msg) {
		rest := strings.TrimPrefix(m.Subject, events.DefaultPrefix+".inst.")
		id, _, _ := strings.Cut(rest, ".")
		mu.Lock()
		lastTo[id] = time.Now()
		gone := advised[id]
		if critical[id] {
			reachedAfter.Add(1)
		}
		mu.Unlock()
		if gone {
			_ = m.RespondMsg(&nats.Msg{Header: nats.Header{"Status": []string{"503"}}})
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer obs.Unsubscribe()
	if err := obs.SetPendingLimits(-1, -1); err != nil {
		b.Fatal(err)
	}
	if err := caller.Flush(); err != nil {
		b.Fatal(err)
	}
	// An attempt's timeout is 5 s on either route: a request that took
	// that long waited for one.
	const routeTimeout = 5 * time.Second
	var stop atomic.Bool
	var served, failed, atCritical, waited atomic.Int64
	var wg sync.WaitGroup
	for range inflight {
		wg.Go(func() {
			for !stop.Load() {
				at := time.Now()
				m, err := caller.Request(events.Subjects{}.Route("echo", "say"), []byte("hi"), 4*routeTimeout)
				text := ""
				if err != nil {
					text = err.Error()
				} else if code, msg, isErr := events.ReplyError(m); isErr {
					text = fmt.Sprintf("%d %s", code, msg)
				}
				switch {
				case text == "":
					served.Add(1)
				case strings.Contains(text, "connection closed"):
					failed.Add(1)
					atCritical.Add(1)
				default:
					failed.Add(1)
					b.Logf("routed request failed after %v: %s", time.Since(at).Round(time.Millisecond), text)
				}
				if time.Since(at) >= routeTimeout {
					waited.Add(1)
				}
			}
		})
	}
	defer func() { stop.Store(true); wg.Wait() }()

	b.ResetTimer()
	var toCritical, toLast []time.Duration
	for k := range kills {
		victim := live[k%len(live)]
		hev := r.health(victim.id)
		mu.Lock()
		victims[victim.conn] = victim.id
		mu.Unlock()
		killed := time.Now()
		if err := syscall.Kill(victim.p.PID(), syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
		ev := waitStatus(b, hev, events.Critical, 10*time.Second)
		toCritical = append(toCritical, time.Since(killed))
		mu.Lock()
		critical[victim.id] = true
		mu.Unlock()
		if !strings.HasPrefix(ev.Reason, "disconnected:") {
			b.Logf("kill %d: critical for %q", k, ev.Reason)
		}
		victim.p.Kill()
		live = slices.DeleteFunc(live, func(e echo) bool { return e.id == victim.id })
		add() // takes a second or more: the router's last sends have come by then
		mu.Lock()
		last := lastTo[victim.id]
		mu.Unlock()
		toLast = append(toLast, max(0, last.Sub(killed)))
	}
	b.StopTimer()
	p99 := func(ds []time.Duration) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[min(len(s)-1, len(s)*99/100)]
	}
	b.ReportMetric(float64(p99(toCritical).Microseconds())/1000, "ms-to-critical-p99")
	b.ReportMetric(float64(p99(toLast).Microseconds())/1000, "ms-to-last-request-p99")
	b.ReportMetric(float64(failed.Load()), "failed")
	b.ReportMetric(float64(waited.Load()), "waited-timeout")
	b.ReportMetric(float64(reachedAfter.Load()), "sent-after-critical")
	b.Logf("%d kills: to critical %v (p99 %v), to the last routed request %v (p99 %v)", kills, toCritical, p99(toCritical), toLast, p99(toLast))
	b.Logf("routed requests: %d served, %d failed (%d of them inside a killed process, answered 504 at its critical event), %d waited for a timeout, %d sent to a killed instance after its critical event reached this benchmark (no responders from then on: retried)",
		served.Load(), failed.Load(), atCritical.Load(), waited.Load(), reachedAfter.Load())
	b.Logf("load average after the kills: %s", loadAverage())
}

// detectOneConn closes one connection holding 1,000 instances.
func detectOneConn(b *testing.B) {
	const many = 1000
	r := startRegion(b)
	caller := r.nc
	one, err := nats.Connect(r.url)
	if err != nil {
		b.Fatal(err)
	}
	ids := map[string]bool{}
	for range many {
		f := fakeinst.Start(b, r.url, fakeinst.Options{Service: "swarm", Conn: one, AnnounceConn: true})
		ids[f.ID] = true
	}
	crit := make(chan string, many)
	sub, err := caller.Subscribe(events.Subjects{}.Health("swarm", "*"), func(m *nats.Msg) {
		if ev, err := events.DecodeHealthEvent(m.Data); err == nil && ev.Status == events.Critical {
			crit <- ev.ID
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := caller.Flush(); err != nil {
		b.Fatal(err)
	}
	closed := time.Now()
	one.Close()
	deadline := time.After(30 * time.Second)
	for len(ids) > 0 {
		select {
		case id := <-crit:
			delete(ids, id)
		case <-deadline:
			b.Fatalf("%d of %d still not critical after 30 s", len(ids), many)
		}
	}
	all := time.Since(closed)
	b.ReportMetric(float64(all.Microseconds())/1000, "ms-1000-on-one-conn")
	b.Logf("%d instances on one connection closed: all critical in %v", many, all)
}

// loadAverage is the machine's load average (1, 5 and 15 minutes), to
// read the figures by.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	return strings.Join(f[:min(3, len(f))], " ")
}
