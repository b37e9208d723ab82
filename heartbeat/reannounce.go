package heartbeat

import "time"

// ReannounceCap bounds the wait between re-announces.
const ReannounceCap = time.Minute

// ReannounceAfter is how long an instance that hears no heartbeat waits
// before announcing again, when failed announces in a row went unanswered:
// three intervals at first (PROTOCOL.md), then exponential backoff with
// full jitter, capped at ReannounceCap, so that a region whose discovery is
// slow or down is not flooded by every instance at once. A heartbeat
// resets failed to 0. jitter(d) returns a duration in [0, d); it is a
// parameter so that the rule is a pure function.
func ReannounceAfter(interval time.Duration, failed int, jitter func(time.Duration) time.Duration) time.Duration {
	base := 3 * interval
	if failed <= 0 {
		return base
	}
	ceiling := min(ReannounceCap, base<<min(failed, 16))
	if ceiling <= base {
		return base
	}
	return base + jitter(ceiling-base)
}
