package console

import (
	"strings"
	"testing"
	"time"

	"github.com/hailsd/hail/events"
)

func TestTrafficBook(t *testing.T) {
	const router = "0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a61"
	const inst = "0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a62"
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	b := newTrafficBook(5*time.Second, 15*time.Minute)
	if v := b.Service("echo", t0); v.State != TrafficNoRouter {
		t.Errorf("before any snapshot: %s", v.State)
	}
	// Routers publish totals; snap adds requests to them.
	var total events.Traffic
	snap := func(at time.Duration, requests, errors int64) {
		s := events.RouterStats{Router: router, TS: t0.Add(at), IntervalMS: 5000}
		if requests > 0 {
			lat := make([]int64, len(events.LatencyBucketsMS)+1)
			lat[1] = requests - requests/10 // 1 ms
			lat[5] = requests / 10          // 25 ms
			total.Add(events.Traffic{Requests: requests, Errors: errors, LatencyMS: lat})
		}
		if total.Requests > 0 {
			tr := total
			tr.LatencyMS = append([]int64(nil), total.LatencyMS...)
			s.Services = []events.ServiceStats{{Service: "echo", Calls: tr, Instances: map[string]events.Traffic{inst: tr}}}
		}
		b.add(s, t0.Add(at))
	}
	snap(-5*time.Second, 0, 0)
	if v := b.Service("echo", t0); v.State != TrafficIdle {
		t.Errorf("a router, no requests: %s", v.State)
	}
	for i := range 12 { // a minute of 100 requests every 5 s, 2 failing
		snap(time.Duration(i)*5*time.Second, 100, 2)
	}
	v := b.Service("echo", t0.Add(55*time.Second))
	if v.State != TrafficServing || v.RPS < 19.9 || v.RPS > 20.1 || v.Success < 0.979 || v.Success > 0.981 || v.P50MS != 1 || v.P99MS != 25 {
		t.Errorf("serving: %+v", v)
	}
	if n := len(v.Spark); n != 180 || v.Spark[179] != 20 {
		t.Errorf("spark: %d points, last %v", n, v.Spark[len(v.Spark)-1])
	}
	if iv := b.Instance(inst, t0.Add(55*time.Second)); iv.RPS < 19.9 || iv.State != TrafficServing {
		t.Errorf("instance: %+v", iv)
	}

	// The router keeps publishing, nothing is routed: stopped, then idle
	// once the window has passed.
	for i := 12; i < 20; i++ {
		snap(time.Duration(i)*5*time.Second, 0, 0)
	}
	if v := b.Service("echo", t0.Add(95*time.Second)); v.State != TrafficStopped {
		t.Errorf("after the traffic stopped: %s", v.State)
	}
	snap(17*time.Minute, 0, 0)
	if v := b.Service("echo", t0.Add(17*time.Minute)); v.State != TrafficIdle {
		t.Errorf("a window later: %s", v.State)
	}
	// No snapshot for three intervals: no router.
	if v := b.Service("echo", t0.Add(17*time.Minute+20*time.Second)); v.State != TrafficNoRouter {
		t.Errorf("router gone: %s", v.State)
	}
}

func TestSparkline(t *testing.T) {
	s := string(sparkline([]float64{0, 1, 4, 2}))
	if !strings.HasPrefix(s, `<svg class="spark"`) || !strings.Contains(s, "<polyline") || !strings.Contains(s, "peak 4.0") {
		t.Errorf("sparkline %s", s)
	}
	if s := string(sparkline(make([]float64, 10))); strings.Contains(s, "<polyline") {
		t.Errorf("an empty series draws a line: %s", s)
	}
}

// Routers publish totals: a snapshot lost on the way loses no request, the
// next one carries it.
func TestTrafficBookLostSnapshot(t *testing.T) {
	const router = "0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a61"
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	b := newTrafficBook(5*time.Second, 15*time.Minute)
	at := func(step int, total int64) {
		s := events.RouterStats{Router: router, TS: t0.Add(time.Duration(step) * 5 * time.Second), IntervalMS: 5000,
			Services: []events.ServiceStats{{Service: "echo", Calls: events.Traffic{Requests: total, LatencyMS: []int64{total}}}}}
		b.add(s, t0.Add(time.Duration(step)*5*time.Second))
	}
	at(0, 100) // the baseline: its history is not drawn
	// The snapshot of step 1 (total 200) is lost.
	at(2, 300)
	v := b.Service("echo", t0.Add(10*time.Second))
	sum := 0.0
	for _, p := range v.Spark {
		sum += p * 5
	}
	if sum != 200 {
		t.Errorf("%v requests counted since the baseline, want all 200", sum)
	}
}

// A snapshot too big for one message comes in parts with one ts: the
// first snapshot's parts are all baseline, a later one's parts each count
// once, and a service's calls repeated in two parts count once.
func TestTrafficBookSplitSnapshot(t *testing.T) {
	const router = "0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a61"
	const a, b2 = "0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a62", "0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a63"
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	b := newTrafficBook(5*time.Second, 15*time.Minute)
	tr := func(n int64) events.Traffic { return events.Traffic{Requests: n, LatencyMS: []int64{n}} }
	round := func(step int, calls, perInstance int64) {
		ts := t0.Add(time.Duration(step) * 5 * time.Second)
		for _, id := range []string{a, b2} { // the service split over two messages
			b.add(events.RouterStats{Router: router, TS: ts, IntervalMS: 5000, Services: []events.ServiceStats{
				{Service: "echo", Calls: tr(calls), Instances: map[string]events.Traffic{id: tr(perInstance)}},
			}}, ts)
		}
	}
	round(0, 1000, 500) // baseline, both parts
	round(1, 1100, 550)
	at := t0.Add(5 * time.Second)
	sum := func(v TrafficView) float64 {
		s := 0.0
		for _, p := range v.Spark {
			s += p * 5
		}
		return s
	}
	if got := sum(b.Service("echo", at)); got != 100 {
		t.Errorf("service: %v requests, want 100", got)
	}
	for _, id := range []string{a, b2} {
		if got := sum(b.Instance(id, at)); got != 50 {
			t.Errorf("instance %s: %v requests, want 50", id, got)
		}
	}
}
