package e2e

import (
	"fmt"
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
// it. Then 1,000 instances on one connection, which is closed: the time
// until all 1,000 are critical. Run with -benchtime=1x (each run does
// every kill):
//
//	go test -run '^$' -bench BenchmarkDetectKill -benchtime=1x ./e2e/
func BenchmarkDetectKill(b *testing.B) {
	const kills, procs, inflight = 20, 5, 16
	r := startRegion(b)
	type echo struct {
		p  *proctest.Process
		id string
	}
	var live []echo
	version := 0
	add := func() {
		version++
		p, id := r.echo(fmt.Sprintf("1.0.%d", version))
		live = append(live, echo{p, id})
	}
	for range procs {
		add()
	}
	caller, err := nats.Connect(r.url)
	if err != nil {
		b.Fatal(err)
	}
	defer caller.Close()
	// An observer of the subjects the router sends to each instance on:
	// the last request it sends a killed one is seen here. For a killed
	// one it answers what the server would without it, no responders, so
	// that the router tries another at once instead of waiting for a
	// timeout the observer alone would cause.
	var mu sync.Mutex
	lastTo := map[string]time.Time{}
	dead := map[string]bool{}
	obs, err := caller.Subscribe(events.Subjects{}.Inst("*", ">"), func(m *nats.Msg) {
		rest := strings.TrimPrefix(m.Subject, events.DefaultPrefix+".inst.")
		id, _, _ := strings.Cut(rest, ".")
		mu.Lock()
		lastTo[id] = time.Now()
		gone := dead[id]
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
	var stop atomic.Bool
	var failed, served atomic.Int64
	var wg sync.WaitGroup
	for range inflight {
		wg.Go(func() {
			for !stop.Load() {
				m, err := caller.Request(events.Subjects{}.Route("echo", "say"), []byte("hi"), 10*time.Second)
				if err != nil {
					failed.Add(1)
				} else if _, _, isErr := events.ReplyError(m); isErr {
					failed.Add(1)
				} else {
					served.Add(1)
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
		dead[victim.id] = true
		mu.Unlock()
		killed := time.Now()
		if err := syscall.Kill(victim.p.PID(), syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
		ev := waitStatus(b, hev, events.Critical, 10*time.Second)
		toCritical = append(toCritical, time.Since(killed))
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
	b.Logf("%d kills: to critical %v (p99 %v), to the last routed request %v (p99 %v); %d routed requests served, %d failed",
		kills, toCritical, p99(toCritical), toLast, p99(toLast), served.Load(), failed.Load())

	// 1,000 instances on one connection, closed.
	const many = 1000
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
