package discovery

// RaceEnabled is raceEnabled for the package's external tests.
const RaceEnabled = raceEnabled

// idle reports whether nothing is queued or being applied (the burst
// tests wait on it).
func (q *admission) idle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return !q.scheduled
}
