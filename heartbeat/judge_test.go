package heartbeat

import (
	"testing"

	"github.com/hailsd/hail/events"
)

var (
	miss    = Verdict{}
	answer  = Verdict{Answered: true}
	warning = Verdict{Answered: true, Reported: events.Warning}
	selfBad = Verdict{Answered: true, Reported: events.Critical}
)

func TestJudgeSequences(t *testing.T) {
	tests := []struct {
		name     string
		start    events.Status
		th       Thresholds
		verdicts []Verdict
		want     []events.Status // status after each verdict
		changes  int             // how many verdicts returned a reason
	}{
		{"three misses make critical", events.Passing, DefaultThresholds,
			[]Verdict{miss, miss, miss}, []events.Status{"passing", "passing", "critical"}, 1},
		{"an answer resets the miss count", events.Passing, DefaultThresholds,
			[]Verdict{miss, miss, answer, miss, miss}, []events.Status{"passing", "passing", "passing", "passing", "passing"}, 0},
		{"one answer brings critical back", events.Passing, DefaultThresholds,
			[]Verdict{miss, miss, miss, answer}, []events.Status{"passing", "passing", "critical", "passing"}, 2},
		{"more misses while critical change nothing", events.Critical, DefaultThresholds,
			[]Verdict{miss, miss, miss, miss}, []events.Status{"critical", "critical", "critical", "critical"}, 0},
		{"recovery threshold of two", events.Critical, Thresholds{FailuresToCritical: 3, SuccessesToPassing: 2},
			[]Verdict{answer, miss, answer, answer}, []events.Status{"critical", "critical", "critical", "passing"}, 1},
		{"self-reported warning counts at once", events.Passing, DefaultThresholds,
			[]Verdict{warning, answer}, []events.Status{"warning", "passing"}, 2},
		{"self-reported critical counts at once", events.Passing, DefaultThresholds,
			[]Verdict{selfBad, selfBad, answer}, []events.Status{"critical", "critical", "passing"}, 2},
		{"warning misses to critical", events.Warning, DefaultThresholds,
			[]Verdict{miss, miss, miss}, []events.Status{"warning", "warning", "critical"}, 1},
		{"critical recovers to reported warning", events.Critical, DefaultThresholds,
			[]Verdict{warning}, []events.Status{"warning"}, 1},
		{"threshold of one", events.Passing, Thresholds{FailuresToCritical: 1, SuccessesToPassing: 1},
			[]Verdict{miss}, []events.Status{"critical"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := State{Status: tt.start}
			changes := 0
			for i, v := range tt.verdicts {
				var reason string
				prev := s.Status
				s, reason = Judge(s, v, tt.th)
				if s.Status != tt.want[i] {
					t.Fatalf("after verdict %d (%+v): status %s, want %s", i, v, s.Status, tt.want[i])
				}
				if (reason != "") != (s.Status != prev) {
					t.Fatalf("after verdict %d: reason %q but status %s -> %s", i, reason, prev, s.Status)
				}
				if reason != "" {
					changes++
				}
			}
			if changes != tt.changes {
				t.Errorf("%d transitions, want %d", changes, tt.changes)
			}
		})
	}
}

func TestJudgeReasonCountsMisses(t *testing.T) {
	s := State{Status: events.Passing}
	var reason string
	for range 3 {
		s, reason = Judge(s, miss, DefaultThresholds)
	}
	if reason != "3 heartbeats missed" {
		t.Errorf("reason = %q", reason)
	}
}

// BenchmarkJudge measures one result: the steady case (a healthy instance
// answering) and a flapping one that changes status every few results.
func BenchmarkJudge(b *testing.B) {
	cases := []struct {
		name     string
		verdicts []Verdict
	}{
		{"steady", []Verdict{answer}},
		{"flapping", []Verdict{answer, miss, answer, miss, miss, miss, answer, warning}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			s := State{Status: events.Passing}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				s, _ = Judge(s, c.verdicts[i%len(c.verdicts)], DefaultThresholds)
			}
		})
	}
}
