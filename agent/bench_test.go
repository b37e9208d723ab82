package agent_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hailsd/hail/agent"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/internal/regiontest"
)

// BenchmarkFiveHundredHTTPChecks runs 500 services with one HTTP check
// each at a 1 s interval on one agent for 10 s, against a real region, and
// reports whether the agent holds every interval: the largest gap between
// two runs of one check, the share of gaps over 1.5 s, and CPU per check
// run (of the whole process: the agent, the HTTP server it checks, the
// embedded NATS server and a discovery node heartbeating the 500).
//
//	go test -run '^$' -bench FiveHundred -benchtime 1x ./agent/
func BenchmarkFiveHundredHTTPChecks(b *testing.B) {
	const services, interval, window = 500, time.Second, 10 * time.Second
	for range b.N {
		r := regiontest.New(b)
		r.StartNode(discovery.Config{})
		var mu sync.Mutex
		seen := map[string][]time.Time{}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			mu.Lock()
			seen[req.URL.Path] = append(seen[req.URL.Path], time.Now())
			mu.Unlock()
		}))
		u, _ := url.Parse(srv.URL)
		port, _ := strconv.Atoi(u.Port())
		svcs := make([]agent.ServiceConfig, services)
		for i := range svcs {
			svcs[i] = agent.ServiceConfig{Name: fmt.Sprintf("svc-%d", i), Address: "127.0.0.1", Port: port,
				Checks: []agent.CheckConfig{{Name: "health", HTTP: fmt.Sprintf("%s/health/%d", srv.URL, i), Interval: interval, Timeout: 500 * time.Millisecond}}}
		}
		a := agent.New(r.Connect(), agent.Config{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx, svcs) }()
		for deadline := time.Now().Add(time.Minute); a.Len() < services; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d services registered within a minute", a.Len(), services)
			}
		}
		mu.Lock()
		clear(seen) // the first rounds at registration are not the steady state
		mu.Unlock()
		cpu0 := cpuTime()
		b.ResetTimer()
		time.Sleep(window) // the measurement is this window's steady state
		b.StopTimer()
		cpu := cpuTime() - cpu0
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		srv.Close()

		mu.Lock()
		runs, late := 0, 0
		var gaps []time.Duration
		for _, ts := range seen {
			runs += len(ts)
			for i := 1; i < len(ts); i++ {
				g := ts[i].Sub(ts[i-1])
				gaps = append(gaps, g)
				if g > interval*3/2 {
					late++
				}
			}
		}
		checked := len(seen)
		mu.Unlock()
		slices.Sort(gaps)
		if checked != services {
			b.Errorf("%d of %d checks ran in the window", checked, services)
		}
		b.ReportMetric(float64(runs)/window.Seconds(), "checks/s")
		b.ReportMetric(float64(cpu.Microseconds())/float64(runs), "cpu-µs/check")
		b.ReportMetric(float64(gaps[len(gaps)-1].Milliseconds()), "max-gap-ms")
		b.ReportMetric(float64(gaps[len(gaps)*99/100].Milliseconds()), "p99-gap-ms")
		b.ReportMetric(100*float64(late)/float64(len(gaps)), "late-%")
		b.ReportMetric(100*cpu.Seconds()/window.Seconds(), "cpu-%-of-a-core")
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
