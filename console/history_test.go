package console

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hailsd/hail/events"
)

func TestHealthHistory(t *testing.T) {
	const id = "0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a62"
	now := time.Date(2026, 12, 2, 11, 0, 0, 0, time.UTC)
	h := newHealthHistory(time.Hour)
	ev := func(ago time.Duration, s, prev events.Status, why string) {
		h.add(events.HealthEvent{ID: id, Service: "web", Status: s, Previous: prev, Reason: why, TS: now.Add(-ago)}, now)
	}
	ev(2*time.Hour, events.Passing, "", "registered") // before the window: its status at the start
	ev(30*time.Minute, events.Critical, events.Passing, "3 heartbeats missed")
	ev(10*time.Minute, events.Passing, events.Critical, "heartbeat answered")
	segs := h.segments(id, now)
	want := []struct {
		from, to time.Duration
		s        events.Status
	}{{60 * time.Minute, 30 * time.Minute, events.Passing}, {30 * time.Minute, 10 * time.Minute, events.Critical}, {10 * time.Minute, 0, events.Passing}}
	if len(segs) != len(want) {
		t.Fatalf("segments %+v", segs)
	}
	for i, w := range want {
		if !segs[i].From.Equal(now.Add(-w.from)) || !segs[i].To.Equal(now.Add(-w.to)) || segs[i].Status != w.s {
			t.Errorf("segment %d = %+v, want %v..%v %s", i, segs[i], w.from, w.to, w.s)
		}
	}
	if s := worstIn(segs, now.Add(-20*time.Minute), now.Add(-19*time.Minute)); s != events.Critical {
		t.Errorf("status 20 min ago: %s", s)
	}
	svg := string(strip(segs, now, time.Hour))
	if strings.Count(svg, `data-status="critical"`) != 1 || !strings.Contains(svg, "3 heartbeats missed") {
		t.Errorf("strip %s", svg)
	}
	// An instance first seen in the window: what came before is its
	// previous status; nothing before its registration.
	const fresh = "0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a63"
	h.add(events.HealthEvent{ID: fresh, Status: events.Passing, TS: now.Add(-5 * time.Minute), Reason: "registered"}, now)
	if segs := h.segments(fresh, now); len(segs) != 1 || !segs[0].From.Equal(now.Add(-5*time.Minute)) {
		t.Errorf("fresh: %+v", segs)
	}
	st := string(stacked([][]segment{h.segments(id, now), h.segments(fresh, now)}, now, time.Hour))
	if !strings.Contains(st, "critical 1") || !strings.Contains(st, "passing 2") {
		t.Errorf("stacked %s", st)
	}
}

// A status of a few seconds is drawn wide enough to be seen and inside the
// strip; the service's chart counts it in its last column.
func TestHealthJustChanged(t *testing.T) {
	const id = "0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a64"
	now := time.Date(2026, 12, 2, 11, 0, 0, 0, time.UTC)
	h := newHealthHistory(time.Hour)
	h.add(events.HealthEvent{ID: id, Service: "web", Status: events.Passing, Reason: "registered", TS: now.Add(-3 * time.Second)}, now)
	h.add(events.HealthEvent{ID: id, Service: "web", Status: events.Critical, Previous: events.Passing, Reason: "3 heartbeats missed", TS: now.Add(-time.Second)}, now)
	segs := h.segments(id, now)
	svg := string(strip(segs, now, time.Hour))
	i := strings.Index(svg, `data-status="critical"`)
	if i < 0 {
		t.Fatalf("no critical segment: %s", svg)
	}
	var x, width float64
	rect := svg[strings.LastIndex(svg[:i], "<rect"):i]
	if _, err := fmt.Sscanf(rect, `<rect x="%g" width="%g"`, &x, &width); err != nil {
		t.Fatalf("%s: %v", rect, err)
	}
	if width < minSegment || x < 0 || x+width > 120.001 {
		t.Errorf("critical drawn at x %v, width %v: not seen, or outside the 120-px strip", x, width)
	}
	if st := string(stacked([][]segment{segs}, now, time.Hour)); !strings.Contains(st, "critical 1") {
		t.Errorf("the service's chart lacks the critical instance: %s", st)
	}
}

// A critical stretch of a second or two in the middle of the hour, passing
// before and after, is a mark of at least minSegment px on the instance's
// strip, drawn over the passing stretches, and on the service's chart,
// though no sample time falls inside it.
func TestShortCriticalIsSeen(t *testing.T) {
	const id = "0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a65"
	now := time.Date(2026, 12, 2, 11, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		ago, long time.Duration
	}{
		{"1 s, 30 min ago", 30*time.Minute + 7*time.Second, time.Second},
		{"2 s, 10 min ago", 10*time.Minute + 31*time.Second, 2 * time.Second},
		{"1 s, just now", 2 * time.Second, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHealthHistory(time.Hour)
			add := func(ago time.Duration, s, prev events.Status) {
				h.add(events.HealthEvent{ID: id, Service: "web", Status: s, Previous: prev, TS: now.Add(-ago)}, now)
			}
			add(2*time.Hour, events.Passing, "")
			add(tc.ago, events.Critical, events.Passing)
			add(tc.ago-tc.long, events.Passing, events.Critical)
			segs := h.segments(id, now)
			for name, svg := range map[string]string{"strip": string(strip(segs, now, time.Hour)), "chart": string(stacked([][]segment{segs}, now, time.Hour))} {
				i := strings.Index(svg, `data-status="critical"`)
				if i < 0 {
					t.Fatalf("%s: no critical mark: %s", name, svg)
				}
				if strings.Contains(svg[i:], `data-status="passing"`) {
					t.Errorf("%s: a passing stretch is drawn over the critical mark: %s", name, svg)
				}
				rect := svg[strings.LastIndex(svg[:i], "<rect"):i]
				var x, width float64
				if _, err := fmt.Sscanf(rect[strings.Index(rect, `x="`):], `x="%g"`, &x); err != nil {
					t.Fatalf("%s: %s: %v", name, rect, err)
				}
				if _, err := fmt.Sscanf(rect[strings.Index(rect, `width="`):], `width="%g"`, &width); err != nil {
					t.Fatalf("%s: %s: %v", name, rect, err)
				}
				if width < minSegment || x < 0 || x+width > 120.001 {
					t.Errorf("%s: critical drawn at x %v, width %v: not seen, or outside the 120-px strip", name, x, width)
				}
			}
		})
	}
}
