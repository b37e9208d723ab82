package console

import (
	"fmt"
	"html/template"
	"strings"
	"sync"
	"time"

	"github.com/hailsd/hail/events"
)

// Traffic states, as the page and the API say them.
const (
	TrafficServing  = "serving"   // requests in the last few steps
	TrafficStopped  = "stopped"   // requests within the window, none lately
	TrafficIdle     = "idle"      // routers publish, nothing was routed
	TrafficNoRouter = "no_router" // no router has published lately
)

// TrafficView is a service's or an instance's golden metrics: over the
// last minute its requests per second, the share that succeeded and its
// latency quantiles, and its requests per second over the window.
type TrafficView struct {
	State   string    `json:"state"`
	RPS     float64   `json:"rps"`
	Success float64   `json:"success"` // 0..1; 1 without requests
	P50MS   float64   `json:"p50_ms"`
	P99MS   float64   `json:"p99_ms"`
	Spark   []float64 `json:"spark"` // requests/s per step, oldest first
}

// trafficSteps is how many steps of traffic the page keeps: 15 minutes at
// the default step of 5 s.
const trafficSteps = 180

// trafficBook merges every router's snapshots (P.stats.router.<id>) into
// fixed steps per service and per instance, for a window.
type trafficBook struct {
	step   time.Duration
	window int // steps kept

	mu      sync.Mutex
	routers map[string]time.Time // when each router last published
	// totals are each router's last totals, by router, then by "s:<svc>"
	// or "i:<id>": a snapshot adds its difference with them.
	totals    map[string]map[string]events.Traffic
	baseline  map[string]time.Time // each router's first snapshot's ts
	interval  time.Duration        // the longest interval routers publish at
	services  map[string]map[int64]events.Traffic
	instances map[string]map[int64]events.Traffic
}

func newTrafficBook(step time.Duration, window time.Duration) *trafficBook {
	return &trafficBook{
		step: step, window: int(window / step),
		routers: map[string]time.Time{}, totals: map[string]map[string]events.Traffic{}, baseline: map[string]time.Time{},
		services: map[string]map[int64]events.Traffic{}, instances: map[string]map[int64]events.Traffic{},
	}
}

func (b *trafficBook) index(t time.Time) int64 { return t.UnixNano() / int64(b.step) }

// add takes in one snapshot, received at now.
func (b *trafficBook) add(s events.RouterStats, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.routers[s.Router] = now
	b.interval = max(b.interval, time.Duration(s.IntervalMS)*time.Millisecond)
	i := b.index(now)
	put := func(into map[string]map[int64]events.Traffic, key string, t events.Traffic) {
		steps := into[key]
		if steps == nil {
			steps = map[int64]events.Traffic{}
			into[key] = steps
		}
		cur := steps[i]
		cur.Add(t)
		steps[i] = cur
		for k := range steps {
			if k <= i-int64(b.window) {
				delete(steps, k)
			}
		}
	}
	// A router's first snapshot is the baseline, in every message it came
	// in (a big one is split, all parts with its ts): a console that starts
	// after the router does not draw its whole history as one step.
	last := b.totals[s.Router]
	if last == nil {
		last = map[string]events.Traffic{}
		b.totals[s.Router] = last
		b.baseline[s.Router] = s.TS
	}
	first := s.TS.Equal(b.baseline[s.Router])
	change := func(key string, total events.Traffic) events.Traffic {
		d := total.Sub(last[key])
		last[key] = total
		return d
	}
	for _, svc := range s.Services {
		calls := change("s:"+svc.Service, svc.Calls)
		insts := map[string]events.Traffic{}
		for id, t := range svc.Instances {
			insts[id] = change("i:"+id, t)
		}
		if first {
			continue
		}
		put(b.services, svc.Service, calls)
		for id, t := range insts {
			put(b.instances, id, t)
		}
	}
	// Routers gone for a window are forgotten.
	for r, at := range b.routers {
		if now.Sub(at) > time.Duration(b.window)*b.step {
			delete(b.routers, r)
			delete(b.totals, r)
			delete(b.baseline, r)
		}
	}
}

// Service is service's view at now.
func (b *trafficBook) Service(name string, now time.Time) TrafficView {
	return b.view(b.services, name, now)
}

// Instance is instance id's view at now.
func (b *trafficBook) Instance(id string, now time.Time) TrafficView {
	return b.view(b.instances, id, now)
}

func (b *trafficBook) view(from map[string]map[int64]events.Traffic, key string, now time.Time) TrafficView {
	b.mu.Lock()
	defer b.mu.Unlock()
	v := TrafficView{Success: 1, Spark: make([]float64, b.window)}
	alive := false
	for _, at := range b.routers {
		if now.Sub(at) <= 3*max(b.interval, b.step) {
			alive = true
		}
	}
	last := b.index(now)
	steps := from[key]
	var minute events.Traffic
	var any, recent bool
	minuteSteps := int64(time.Minute / b.step)
	// Recent: within the last three publishing intervals, so one late
	// snapshot does not read as a stop.
	recentSteps := int64(3*max(b.interval, b.step)/b.step) + 1
	for k, t := range steps {
		age := last - k
		if age < 0 || age >= int64(b.window) {
			continue
		}
		v.Spark[int64(b.window)-1-age] = float64(t.Requests) / b.step.Seconds()
		if t.Requests == 0 {
			continue
		}
		any = true
		if age < recentSteps {
			recent = true
		}
		if age < minuteSteps {
			minute.Add(t)
		}
	}
	switch {
	case !alive:
		v.State = TrafficNoRouter
	case recent:
		v.State = TrafficServing
	case any:
		v.State = TrafficStopped
	default:
		v.State = TrafficIdle
	}
	if minute.Requests > 0 {
		span := min(time.Minute, time.Duration(b.window)*b.step)
		v.RPS = float64(minute.Requests) / span.Seconds()
		v.Success = 1 - float64(minute.Errors)/float64(minute.Requests)
		v.P50MS, v.P99MS = minute.Quantile(0.5), minute.Quantile(0.99)
	}
	return v
}

// sparkline draws a series as a small inline SVG, scaled to its peak: the
// page needs no script or library for it.
func sparkline(points []float64) template.HTML {
	const w, h = 120.0, 20.0
	// At most 60 points (a 120-px line shows no more): a page of a
	// hundred services stays small.
	if k := (len(points) + 59) / 60; k > 1 {
		var fewer []float64
		for i := 0; i < len(points); i += k {
			sum := 0.0
			for _, p := range points[i:min(i+k, len(points))] {
				sum += p
			}
			fewer = append(fewer, sum/float64(k))
		}
		points = fewer
	}
	peak := 0.0
	for _, p := range points {
		peak = max(peak, p)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="spark" viewBox="0 0 %g %g" width="%g" height="%g" role="img" aria-label="requests per second, peak %.1f">`, w, h, w, h, peak)
	if peak > 0 && len(points) > 1 {
		b.WriteString(`<polyline fill="none" stroke="currentColor" stroke-width="1.2" points="`)
		for i, p := range points {
			fmt.Fprintf(&b, "%.1f,%.1f ", float64(i)*w/float64(len(points)-1), h-1-p/peak*(h-2))
		}
		b.WriteString(`"/>`)
	} else {
		fmt.Fprintf(&b, `<line x1="0" y1="%g" x2="%g" y2="%g" stroke="#ccd" stroke-width="1"/>`, h-1, w, h-1)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // safe: only numbers are formatted into it
}
