package health

import (
	"testing"

	"github.com/hailsd/hail/events"
)

const (
	p = events.Passing
	w = events.Warning
	c = events.Critical
)

// Each row: the thresholds, the results in order, the status after each.
func TestJudge(t *testing.T) {
	tests := []struct {
		name    string
		th      Thresholds
		results []events.Status
		want    []events.Status
	}{
		{"defaults: every result counts at once", Thresholds{}, []events.Status{p, c, p, w, p}, []events.Status{p, c, p, w, p}},
		{"first result counts at once, whatever the thresholds", Thresholds{SuccessBeforePassing: 3, FailuresBeforeCritical: 3}, []events.Status{p}, []events.Status{p}},
		{"first failure counts at once too", Thresholds{FailuresBeforeCritical: 3}, []events.Status{c}, []events.Status{c}},
		{"three failures to critical", Thresholds{FailuresBeforeCritical: 3}, []events.Status{p, c, c, c}, []events.Status{p, p, p, c}},
		{"a success resets the failures", Thresholds{FailuresBeforeCritical: 3}, []events.Status{p, c, c, p, c, c}, []events.Status{p, p, p, p, p, p}},
		{"warning before critical", Thresholds{FailuresBeforeWarning: 1, FailuresBeforeCritical: 3}, []events.Status{p, c, c, c}, []events.Status{p, w, w, c}},
		{"warning threshold defaults to critical's", Thresholds{FailuresBeforeCritical: 2}, []events.Status{p, c, c}, []events.Status{p, p, c}},
		{"the result's own status once reached: a 429 stays warning", Thresholds{FailuresBeforeCritical: 2}, []events.Status{p, w, w}, []events.Status{p, p, w}},
		{"two successes to passing", Thresholds{SuccessBeforePassing: 2}, []events.Status{c, p, p}, []events.Status{c, c, p}},
		{"a failure resets the successes", Thresholds{SuccessBeforePassing: 2}, []events.Status{c, p, c, p, p}, []events.Status{c, c, c, c, p}},
		{"1 means the same as 0", Thresholds{SuccessBeforePassing: 1, FailuresBeforeWarning: 1, FailuresBeforeCritical: 1}, []events.Status{p, c, p}, []events.Status{p, c, p}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Initial()
			if s.Status != events.Critical {
				t.Fatalf("initial status %s, want critical", s.Status)
			}
			for i, r := range tt.results {
				s = Judge(s, r, tt.th)
				if s.Status != tt.want[i] {
					t.Fatalf("after result %d (%s): %s, want %s", i, r, s.Status, tt.want[i])
				}
			}
		})
	}
}
