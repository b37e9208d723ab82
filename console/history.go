package console

import (
	"fmt"
	"html/template"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hailsd/hail/events"
)

// healthHistory keeps every instance's health events of the last window
// (from HAIL_EVENTS at start, then live), for the page's strips.
type healthHistory struct {
	window time.Duration

	mu   sync.Mutex
	byID map[string][]events.HealthEvent // ordered by time
}

func newHealthHistory(window time.Duration) *healthHistory {
	return &healthHistory{window: window, byID: map[string][]events.HealthEvent{}}
}

// add takes in an event, in or out of order.
func (h *healthHistory) add(ev events.HealthEvent, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	evs := append(h.byID[ev.ID], ev)
	slices.SortStableFunc(evs, func(a, b events.HealthEvent) int { return a.TS.Compare(b.TS) })
	// Keep one event from before the window: it says the status at its
	// start.
	cut := 0
	for cut+1 < len(evs) && evs[cut+1].TS.Before(now.Add(-h.window)) {
		cut++
	}
	h.byID[ev.ID] = evs[cut:]
	if ev.Status == events.Deregistered && now.Sub(ev.TS) > h.window {
		delete(h.byID, ev.ID)
	}
}

// segment is a stretch of one status.
type segment struct {
	From, To time.Time
	Status   events.Status
	Reason   string
}

// segments are id's statuses over the window ending at now; a stretch
// before its first known event is left out.
func (h *healthHistory) segments(id string, now time.Time) []segment {
	h.mu.Lock()
	evs := slices.Clone(h.byID[id])
	h.mu.Unlock()
	start := now.Add(-h.window)
	var out []segment
	if len(evs) > 0 && evs[0].TS.After(start) && evs[0].Previous != "" {
		// The status before the first event in the window is its
		// previous one.
		out = append(out, segment{From: start, To: evs[0].TS, Status: evs[0].Previous})
	}
	for i, ev := range evs {
		to := now
		if i+1 < len(evs) {
			to = evs[i+1].TS
		}
		from := ev.TS
		if from.Before(start) {
			from = start
		}
		if !to.After(from) || ev.Status == events.Deregistered {
			continue
		}
		out = append(out, segment{From: from, To: to, Status: ev.Status, Reason: ev.Reason})
	}
	return out
}

var statusColor = map[events.Status]string{
	events.Passing: "#2e9d57", events.Warning: "#e0a100", events.Critical: "#d64541",
}

// minSegment is the narrowest a status is drawn, in px of 120: an hour's
// strip gives a minute 2 px and a second 0.03, and a status of a second
// or more (an instance that was critical for a moment) must still be seen.
const minSegment = 4.0

// severity orders the statuses as they are drawn: the worse on top, so
// that the passing stretch after a short critical one does not cover its
// widened mark.
func severity(s events.Status) int {
	switch s {
	case events.Passing:
		return 1
	case events.Warning:
		return 2
	case events.Critical:
		return 3
	}
	return 0
}

// strip draws an instance's statuses over the window as a bar of colored
// segments, each with its status, start and reason on hover; every
// segment at least minSegment wide, the worse drawn over the better.
func strip(segs []segment, now time.Time, window time.Duration) template.HTML {
	const w, h = 120.0, 10.0
	start := now.Add(-window)
	x := func(t time.Time) float64 { return float64(t.Sub(start)) / float64(window) * w }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="strip" viewBox="0 0 %g %g" width="%g" height="%g" role="img" aria-label="health over the last %v">`, w, h, w, h, window)
	fmt.Fprintf(&b, `<rect width="%g" height="%g" fill="#eef"/>`, w, h)
	segs = slices.Clone(segs)
	slices.SortStableFunc(segs, func(a, b segment) int { return severity(a.Status) - severity(b.Status) })
	for _, s := range segs {
		c, ok := statusColor[s.Status]
		if !ok {
			continue
		}
		title := fmt.Sprintf("%s from %s", s.Status, s.From.Format("15:04:05"))
		if s.Reason != "" {
			title += ": " + s.Reason
		}
		// Widened to be seen, and kept inside the strip: the last
		// segment ends now, at its right edge.
		width := max(x(s.To)-x(s.From), minSegment)
		fmt.Fprintf(&b, `<rect x="%.2f" width="%.2f" height="%g" fill="%s" data-status="%s"><title>%s</title></rect>`,
			min(x(s.From), w-width), width, h, c, s.Status, template.HTMLEscapeString(title))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // safe: numbers, known colors and an escaped title
}

// worstIn is the worst status segs hold anywhere in [from, to), "" when
// none: a sample of a service's chart stands for its whole stretch, so a
// critical second between two sample times still counts.
func worstIn(segs []segment, from, to time.Time) events.Status {
	var worst events.Status
	for _, s := range segs {
		if s.From.Before(to) && s.To.After(from) && severity(s.Status) > severity(worst) {
			worst = s.Status
		}
	}
	return worst
}

// stacked draws a service's instances by status over the window: one
// column per sample, each instance counted by its worst status in the
// column's stretch, passing at the bottom, then warning, critical on top.
// A run of warning or critical columns is at least minSegment wide and
// drawn over the passing ones, as in strip.
func stacked(all [][]segment, now time.Time, window time.Duration) template.HTML {
	const w, h, samples = 120.0, 20.0, 60
	peak := max(len(all), 1)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="stacked" viewBox="0 0 %g %g" width="%g" height="%g" role="img" aria-label="instances by status over the last %v">`, w, h, w, h, window)
	col := w / samples
	// Counts per sample first; then one rectangle per run of equal
	// counts, so a steady service is three rectangles, not 180.
	counts := make([]map[events.Status]int, samples)
	step := window / samples
	for i := range samples {
		from := now.Add(-window + time.Duration(i)*step)
		counts[i] = map[events.Status]int{}
		for _, segs := range all {
			counts[i][worstIn(segs, from, from.Add(step))]++
		}
	}
	byStatus := map[events.Status]*strings.Builder{events.Passing: {}, events.Warning: {}, events.Critical: {}}
	for i := 0; i < samples; {
		j := i + 1
		for j < samples && maps.Equal(counts[j], counts[i]) {
			j++
		}
		y := h
		for _, s := range []events.Status{events.Passing, events.Warning, events.Critical} {
			n := counts[i][s]
			if n == 0 {
				continue
			}
			bar := float64(n) / float64(peak) * h
			y -= bar
			x, width := float64(i)*col, float64(j-i)*col
			if s != events.Passing && width < minSegment {
				x, width = min(x, w-minSegment), minSegment
			}
			fmt.Fprintf(byStatus[s], `<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="%s" data-status="%s"><title>%s %d</title></rect>`,
				x, y, width, bar, statusColor[s], s, s, n)
		}
		i = j
	}
	for _, s := range []events.Status{events.Passing, events.Warning, events.Critical} {
		b.WriteString(byStatus[s].String())
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // safe: numbers and known words
}
