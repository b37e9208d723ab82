package health

import "github.com/hailsd/hail/events"

// Thresholds are Consul's: how many results in a row change a check's
// status. 0 and 1 both mean the first result counts.
type Thresholds struct {
	SuccessBeforePassing int `koanf:"success_before_passing"`
	// FailuresBeforeWarning defaults (0) to FailuresBeforeCritical.
	FailuresBeforeWarning  int `koanf:"failures_before_warning"`
	FailuresBeforeCritical int `koanf:"failures_before_critical"`
}

// State is what the judge remembers of one check between results.
type State struct {
	Status    events.Status
	Successes int // passing results in a row
	Failures  int // results in a row that were not passing
	Started   bool
}

// Initial is a check's state before its first result: critical.
func Initial() State { return State{Status: events.Critical} }

// Judge returns a check's state after one result. Like heartbeat.Judge it
// has no clock. A check is critical until its first result, which counts
// at once; after that any result that is not passing is a failure: once
// the failures in a row reach FailuresBeforeCritical the check takes the
// result's own status, and from FailuresBeforeWarning up to that it is
// warning; SuccessBeforePassing passing results in a row make it passing.
func Judge(prev State, got events.Status, th Thresholds) State {
	next := prev
	next.Started = true
	if got == events.Passing {
		next.Failures = 0
		next.Successes++
		if !prev.Started || next.Successes >= max(1, th.SuccessBeforePassing) {
			next.Status = events.Passing
		}
		return next
	}
	next.Successes = 0
	next.Failures++
	critical := max(1, th.FailuresBeforeCritical)
	warning := th.FailuresBeforeWarning
	if warning == 0 {
		warning = th.FailuresBeforeCritical
	}
	warning = max(1, warning)
	switch {
	case !prev.Started || next.Failures >= critical:
		next.Status = got
	case next.Failures >= warning:
		next.Status = events.Warning
	}
	return next
}
