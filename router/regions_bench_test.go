package router_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/router"
)

// BenchmarkAcrossRegions is the cost of the cross-region path, side by
// side with the local one in one run (interleaved, so load on the machine
// hits both alike): eu's router routes near (an instance in eu) and far
// (an instance only in us, across the leafnode), and the same instances
// are asked directly on hail.inst.<id>.say for reference. Each reports
// p50 and p99 of request-reply as the caller sees it.
//
//	go test -run '^$' -bench AcrossRegions -benchtime 5000x ./router/
func BenchmarkAcrossRegions(b *testing.B) {
	eu, us := linkedRegions(b)
	r := eu.StartRouter(router.Config{Table: router.TableConfig{RemoteRegions: []string{"us"}}})
	near := fakeinst.Start(b, eu.URL, fakeinst.Options{Service: "near"})
	far := fakeinst.Start(b, us.URL, fakeinst.Options{Service: "far"})
	bustest.Eventually(b, 20*time.Second, func() error {
		if v := r.Table().View("far"); v == nil || len(v.Abroad) != 1 {
			return errors.New("far not routable yet")
		}
		if r.Table().View("near") == nil {
			return errors.New("near not routable yet")
		}
		return nil
	})
	paths := []struct{ name, subject, want string }{
		{"routed-local", subjects.Route("near", "say"), near.ID},
		{"routed-remote", subjects.Route("far", "say"), far.ID},
		{"direct-local", subjects.Inst(near.ID, "say"), near.ID},
		{"direct-remote", subjects.Inst(far.ID, "say"), far.ID},
	}
	took := make([][]time.Duration, len(paths))
	for b.Loop() {
		for i, p := range paths {
			start := time.Now()
			m, err := eu.NC.Request(p.subject, nil, 5*time.Second)
			d := time.Since(start)
			if err != nil {
				b.Fatalf("%s: %v", p.name, err)
			}
			if string(m.Data) != p.want {
				b.Fatalf("%s: answered %q, want %s", p.name, m.Data, p.want)
			}
			took[i] = append(took[i], d)
		}
	}
	for i, p := range paths {
		slices.Sort(took[i])
		n := len(took[i])
		b.ReportMetric(float64(took[i][n/2].Microseconds()), p.name+"-p50-µs")
		b.ReportMetric(float64(took[i][n*99/100].Microseconds()), p.name+"-p99-µs")
	}
}

// BenchmarkFailoverAcrossRegions times, under continuous routing from eu
// (a request every 500 µs, open loop), the kill of eu's last instance of echo to the first answer
// from us across the leafnode, and the registration of a new instance in
// eu to its first answer. Each iteration is one kill and one return.
//
//	go test -run '^$' -bench FailoverAcrossRegions -benchtime 20x ./router/
func BenchmarkFailoverAcrossRegions(b *testing.B) {
	eu, us := linkedRegions(b)
	r := eu.StartRouter(router.Config{Table: router.TableConfig{RemoteRegions: []string{"us"}}})
	if _, err := eu.KV.Config.Put(b.Context(), events.RouteConfigKey("echo"), []byte(`{"retries":1,"retry_on_timeout":true,"timeout_ms":4000}`)); err != nil {
		b.Fatal(err)
	}
	far := fakeinst.Start(b, us.URL, fakeinst.Options{Service: "echo"})
	home := fakeinst.Start(b, eu.URL, fakeinst.Options{Service: "echo", AnnounceConn: true})
	bustest.Eventually(b, 20*time.Second, func() error {
		if v := r.Table().View("echo"); v == nil || len(v.Abroad) != 1 {
			return errors.New("us not routable yet")
		}
		return nil
	})
	rl := startRegionLoad(eu, 500*time.Microsecond)
	rl.firstAnswer(b, home.ID)
	var failover, back []time.Duration
	for b.Loop() {
		rl.mu.Lock()
		delete(rl.first, far.ID)
		rl.mu.Unlock()
		killed := time.Now()
		home.Kill()
		failover = append(failover, rl.firstAnswer(b, far.ID).Sub(killed))
		registered := time.Now()
		home = fakeinst.Start(b, eu.URL, fakeinst.Options{Service: "echo", AnnounceConn: true})
		back = append(back, rl.firstAnswer(b, home.ID).Sub(registered))
	}
	rl.finish()
	if len(rl.errors) > 0 {
		b.Errorf("%d requests, failures %s", rl.total, rl.errorList())
	}
	for _, m := range []struct {
		name string
		d    []time.Duration
	}{{"failover", failover}, {"back", back}} {
		slices.Sort(m.d)
		b.ReportMetric(ms(m.d[len(m.d)/2]), m.name+"-p50-ms")
		b.ReportMetric(ms(m.d[len(m.d)-1]), m.name+"-max-ms")
	}
	b.ReportMetric(float64(rl.total), "requests")
	b.ReportMetric(float64(len(rl.errors)), "failed")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
