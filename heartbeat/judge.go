package heartbeat

import (
	"fmt"

	"github.com/hailsd/hail/events"
)

// Thresholds of PROTOCOL.md "Timing defaults".
type Thresholds struct {
	// FailuresToCritical is how many heartbeats in a row an instance may
	// miss before it is critical (default 3).
	FailuresToCritical int
	// SuccessesToPassing is how many heartbeats in a row a critical
	// instance must answer to leave critical (default 1).
	SuccessesToPassing int
}

// DefaultThresholds are PROTOCOL.md's.
var DefaultThresholds = Thresholds{FailuresToCritical: 3, SuccessesToPassing: 1}

// State is what the judge remembers of one instance between results.
type State struct {
	Status    events.Status
	Failures  int // heartbeats missed in a row
	Successes int // heartbeats answered in a row while critical
}

// Verdict is one heartbeat's outcome as the judge sees it.
type Verdict struct {
	Answered bool
	// Reported is the instance's own view when it answered; empty means
	// passing.
	Reported events.Status
}

// Judge returns the state after one heartbeat result and, when the status
// changed, the reason. It has no clock: the tracker decides what a missed
// heartbeat is, and tests drive the judge with plain values.
//
// An instance's own report of warning or critical counts at once (it knows
// best); missing heartbeats counts only after FailuresToCritical in a row;
// recovering from critical needs SuccessesToPassing answers in a row
// (consul's StatusHandler).
func Judge(prev State, v Verdict, th Thresholds) (State, string) {
	next := prev
	if !v.Answered {
		next.Successes = 0
		next.Failures++
		if prev.Status != events.Critical && next.Failures >= th.FailuresToCritical {
			next.Status = events.Critical
			return next, fmt.Sprintf("%d heartbeats missed", next.Failures)
		}
		return next, ""
	}
	next.Failures = 0
	reported := v.Reported
	if reported == "" {
		reported = events.Passing
	}
	if prev.Status == events.Critical && reported != events.Critical {
		next.Successes++
		if next.Successes < th.SuccessesToPassing {
			return next, ""
		}
	}
	next.Successes = 0
	if reported == prev.Status {
		return next, ""
	}
	next.Status = reported
	if prev.Status == events.Critical {
		return next, fmt.Sprintf("heartbeat answered, instance reports %s", reported)
	}
	return next, fmt.Sprintf("instance reports %s", reported)
}
