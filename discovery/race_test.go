//go:build race

package discovery

// raceEnabled: the race detector slows every goroutine several times, so
// tests whose figures are about time take fewer instances under it.
const raceEnabled = true
