package health

import (
	"fmt"
	"sync"
	"time"

	"github.com/hailsd/hail/events"
)

// TTL is a check the service reports itself (the agent's
// PUT /v1/check/<service>/<check>/pass|warn|fail): the status last
// reported, or critical once nothing was reported for ttl. Every report,
// warn and fail too, restarts the clock. It is critical until the first
// report. Safe for concurrent use.
type TTL struct {
	ttl time.Duration

	mu       sync.Mutex
	last     Result
	deadline time.Time
	reported bool
}

// NewTTL makes a TTL check.
func NewTTL(ttl time.Duration) *TTL {
	return &TTL{ttl: ttl, last: Result{Status: events.Critical, Output: "no report yet"}}
}

// Report records a report at now: pass, warn or fail.
func (t *TTL) Report(report, output string, now time.Time) error {
	var s events.Status
	switch report {
	case "pass":
		s = events.Passing
	case "warn":
		s = events.Warning
	case "fail":
		s = events.Critical
	default:
		return fmt.Errorf("report %q is not pass, warn or fail", report)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.last, t.deadline, t.reported = result(s, output), now.Add(t.ttl), true
	return nil
}

// Result is the check's result at now.
func (t *TTL) Result(now time.Time) Result {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.reported && now.After(t.deadline) {
		return Result{Status: events.Critical, Output: fmt.Sprintf("TTL expired: no report within %v", t.ttl)}
	}
	return t.last
}
