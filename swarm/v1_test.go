package swarm

import (
	"testing"
	"time"
)

// A v1 client's decisions, as member's TestDecisions lists the SDK's: each
// step is an event at an offset from the start, and when the client
// announces next afterwards.
func TestV1Decisions(t *testing.T) {
	const s, ms = time.Second, time.Millisecond
	type step struct {
		at   time.Duration
		do   string // begin, announced, beat, discover
		wake time.Duration
		// unheard wants the announce due at `at` to be (or not be) for
		// want of a heartbeat; checked before the step's event, only on
		// announced steps.
		unheard bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"announces at once, and heartbeats keep it quiet", []step{
			{at: 0, do: "begin", wake: 0},
			{at: 0, do: "announced", wake: 3 * s},
			{at: 1 * s, do: "beat", wake: 4 * s},
			{at: 2 * s, do: "beat", wake: 5 * s},
			{at: 1 * s, do: "beat", wake: 5 * s}, // an older beat changes nothing
		}},
		{"no heartbeat for 3 intervals after the announce: again", []step{
			{at: 0, do: "begin", wake: 0},
			{at: 0, do: "announced", wake: 3 * s},
			{at: 3 * s, do: "announced", wake: 6 * s, unheard: true},
			{at: 6 * s, do: "announced", wake: 9 * s, unheard: true},
		}},
		{"no heartbeat for 3 intervals after the last: again", []step{
			{at: 0, do: "begin", wake: 0},
			{at: 0, do: "announced", wake: 3 * s},
			{at: 2 * s, do: "beat", wake: 5 * s},
			{at: 5 * s, do: "announced", wake: 8 * s, unheard: true},
		}},
		// The answer is not read: a 503 with retry_after_ms of a minute,
		// or none at all, is the same 3 intervals, again and again, with
		// no backoff.
		{"whatever the answer, 3 intervals, no backoff", []step{
			{at: 0, do: "begin", wake: 0},
			{at: 0, do: "announced", wake: 3 * s},
			{at: 3 * s, do: "announced", wake: 6 * s, unheard: true},
			{at: 6 * s, do: "announced", wake: 9 * s, unheard: true},
			{at: 9 * s, do: "announced", wake: 12 * s, unheard: true},
		}},
		// A discover's spread_ms is not read: it announces at once.
		{"a discover: at once", []step{
			{at: 0, do: "begin", wake: 0},
			{at: 0, do: "announced", wake: 3 * s},
			{at: 1 * s, do: "beat", wake: 4 * s},
			{at: 1500 * ms, do: "discover", wake: 1500 * ms},
			{at: 1500 * ms, do: "beat", wake: 1500 * ms}, // a beat does not cancel it
			{at: 1500 * ms, do: "announced", wake: 4500 * ms, unheard: false},
		}},
		{"a discover before the first announce: still the first", []step{
			{at: 0, do: "begin", wake: 0},
			{at: 0, do: "discover", wake: 0},
			{at: 0, do: "announced", wake: 3 * s, unheard: false},
		}},
	}
	start := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st v1State
			for i, step := range tt.steps {
				now := start.Add(step.at)
				switch step.do {
				case "begin":
					st = v1Begin(now)
				case "announced":
					if !v1Due(st, now) {
						t.Fatalf("step %d: announced at %v, but not due (next %v)", i, step.at, st.Next.Sub(start))
					}
					if got := v1Unheard(st, now); got != step.unheard {
						t.Errorf("step %d: unheard %v, want %v", i, got, step.unheard)
					}
					st = v1Announced(st, now, time.Second)
				case "beat":
					st = v1Beat(st, now, time.Second)
				case "discover":
					st = v1Discovered(st)
				default:
					t.Fatalf("step %d: unknown %q", i, step.do)
				}
				if got := wakeOf(st, now).Sub(start); got != step.wake {
					t.Errorf("step %d (%s at %v): announces next at %v, want %v", i, step.do, step.at, got, step.wake)
				}
			}
		})
	}
}

// wakeOf is when s next falls due, seen at now: at once when a discover
// asked.
func wakeOf(s v1State, now time.Time) time.Time {
	if s.Asked {
		return now
	}
	return s.Next
}
