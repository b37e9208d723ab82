// Package router routes requests to one healthy instance of a service: a
// routing table fed by the registry (a KV watch of hail_instances, health
// events and hail_config routes), one picker per selection strategy, and a
// forwarder that retries when an instance turns out to be gone.
package router

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNoInstance is returned by Pick when no instance may take the request.
var ErrNoInstance = errors.New("no healthy instance")

// Picker chooses an instance for one request. It is built from a fixed set
// of targets and never blocks; a new Picker replaces it when membership,
// health or the route changes (grpc-go's Picker model).
//
// key is the request's hash key ("" when it has none); avoid, when not nil,
// rules targets out for this request (ones it already tried). The chosen
// target's in-flight count is already raised: the caller must call
// Target.Done once the attempt ends.
type Picker interface {
	Pick(key string, avoid func(*Target) bool) (*Target, error)
}

// Target is one instance as a picker sees it.
type Target struct {
	ID string
	// Weight is the effective weight (> 0): the announced one, or the
	// route's override, scaled down while the instance is warning.
	Weight int
	load   *Load
}

// NewTarget makes a target with its own load; tests and benchmarks use it,
// the table shares one Load per instance across pickers.
func NewTarget(id string, weight int) *Target {
	return &Target{ID: id, Weight: weight, load: newLoad(nil)}
}

// Inflight is the number of requests this router has sent to the target
// and not yet seen end.
func (t *Target) Inflight() int64 { return t.load.inflight.Load() }

// acquire raises the in-flight count for a pick.
func (t *Target) acquire() {
	t.load.inflight.Add(1)
	if t.load.total != nil {
		t.load.total.Add(1)
	}
}

// tryAcquire raises the in-flight count only while it is below limit.
func (t *Target) tryAcquire(limit int64) bool {
	for {
		cur := t.load.inflight.Load()
		if cur >= limit {
			return false
		}
		if t.load.inflight.CompareAndSwap(cur, cur+1) {
			if t.load.total != nil {
				t.load.total.Add(1)
			}
			return true
		}
	}
}

// Done ends an attempt: latency is how long it took, failed whether the
// instance failed it (no reply, or an error it should not have given).
func (t *Target) Done(latency time.Duration, failed bool) {
	t.load.inflight.Add(-1)
	if t.load.total != nil {
		t.load.total.Add(-1)
	}
	t.load.observe(latency, failed)
}

// ejected reports whether passive outlier detection has taken the target
// out; pickers pass over it.
func (t *Target) ejected() bool { return t.load.ejected.Load() }

// Load is what a router knows of one instance's load and latency. It
// outlives pickers: a new snapshot of the same instance keeps its figures.
type Load struct {
	inflight atomic.Int64
	// total is the service's in-flight sum, for the hash strategy's bound.
	total   *atomic.Int64
	ejected atomic.Bool

	mu     sync.Mutex
	ewma   float64 // nanoseconds, peak-sensitive
	stamp  time.Time
	streak int // ejections in a row, for backoff
}

func newLoad(total *atomic.Int64) *Load { return &Load{total: total} }

// Latency-aware selection (Finagle's and Linkerd's peak EWMA).
const (
	// ewmaDecay is the time constant over which an old latency fades.
	ewmaDecay = 10 * time.Second
	// failurePenalty is the latency a failed attempt counts as, so an
	// instance that fails fast does not look fast.
	failurePenalty = time.Second
	// unknownLatency is assumed for an instance with no replies yet: low
	// enough that it gets tried, high enough not to take every request
	// while its first replies are on their way.
	unknownLatency = 5 * time.Millisecond
)

func (l *Load) observe(latency time.Duration, failed bool) {
	sample := float64(latency)
	if failed {
		sample = max(sample, float64(failurePenalty))
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !failed {
		l.streak = 0
	}
	if l.stamp.IsZero() || sample > l.ewma {
		// Peak sensitivity: a slow reply counts in full at once.
		l.ewma = sample
	} else {
		w := decayWeight(now.Sub(l.stamp))
		l.ewma = l.ewma*w + sample*(1-w)
	}
	l.stamp = now
}

// latency is the EWMA as of now, decayed over the time without samples so
// that an instance once slow gets tried again.
func (l *Load) latency(now time.Time) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stamp.IsZero() {
		return float64(unknownLatency)
	}
	return l.ewma * decayWeight(now.Sub(l.stamp))
}
