package router

import (
	"errors"
	"math"
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
	// Scoped: reached on P.inst.<service>.<id>.<endpoint> (v1.2).
	Scoped bool
	// AZ is the instance's zone ("" is a zone too: PROTOCOL v1.5).
	AZ string
	// Region is the instance's region when it is not the router's own
	// (it came from hail_remote); "" at home.
	Region string
	load   *Load
}

// newTarget makes a target with its own load, for tests and benchmarks;
// the table shares one Load per instance across pickers.
func newTarget(id string, weight int) *Target {
	return &Target{ID: id, Weight: weight, load: newLoad(nil, nil)}
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

// Result is how an attempt on a target ended.
type Result struct {
	Latency time.Duration
	// Failed is true when the instance failed the attempt: no reply, or
	// an error reply it should not have given (5xx).
	Failed bool
	// At is when the attempt ended; zero means now. The forwarder has the
	// time already, and reading the clock costs more than a pick.
	At time.Time
}

// Done ends an attempt on t.
func (t *Target) Done(r Result) {
	t.load.inflight.Add(-1)
	if t.load.total != nil {
		t.load.total.Add(-1)
	}
	if r.At.IsZero() {
		r.At = time.Now()
	}
	if r.Latency > 0 || r.Failed { // a zero Result is an attempt that never went out
		t.load.traffic.add(r.Latency, r.Failed)
	}
	t.load.observe(r)
}

// ejected reports whether passive outlier detection has taken the target
// out; pickers pass over it.
func (t *Target) ejected() bool { return t.load.ejected.Load() }

// Load is what a router knows of one instance's load and latency. It
// outlives pickers: a new snapshot of the same instance keeps its figures.
type Load struct {
	inflight atomic.Int64
	// total is the service's in-flight sum, for the hash strategy's bound.
	total *atomic.Int64
	// owner is the state the instance's ejections count in: its
	// service's, or the service's in its region when that is another.
	owner   *serviceState
	ejected atomic.Bool
	// clock is when the last attempt on any instance of the service
	// ended (Unix ns): a clock for decaying latencies that costs no
	// system call on the pick path.
	clock *atomic.Int64

	// ewma (float64 bits, nanoseconds, peak-sensitive) and stamp (Unix ns
	// of its last sample, 0 for none) are written under mu and read
	// without it: a pick may see one a sample newer than the other,
	// which moves a cost by one sample at most.
	ewma  atomic.Uint64
	stamp atomic.Int64

	mu     sync.Mutex
	streak int // ejections in a row, for backoff

	traffic traffic // attempts on this instance, for the published snapshots
}

func newLoad(total, clock *atomic.Int64) *Load {
	if clock == nil {
		clock = new(atomic.Int64)
	}
	return &Load{total: total, clock: clock}
}

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

func (l *Load) observe(r Result) {
	sample := float64(r.Latency)
	if r.Failed {
		sample = max(sample, float64(failurePenalty))
	}
	now := r.At.UnixNano()
	if now > l.clock.Load() {
		l.clock.Store(now) // racing stores all hold recent times
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !r.Failed {
		l.streak = 0
	}
	stamp, ewma := l.stamp.Load(), math.Float64frombits(l.ewma.Load())
	if stamp == 0 || sample > ewma {
		// Peak sensitivity: a slow reply counts in full at once.
		ewma = sample
	} else {
		w := decayWeight(time.Duration(now - stamp))
		ewma = ewma*w + sample*(1-w)
	}
	l.ewma.Store(math.Float64bits(ewma))
	l.stamp.Store(max(stamp, now))
}

// latency is the EWMA decayed over the time since its last sample (by the
// service's clock), so that an instance once slow gets tried again.
func (l *Load) latency() float64 {
	stamp := l.stamp.Load()
	if stamp == 0 {
		return float64(unknownLatency)
	}
	return math.Float64frombits(l.ewma.Load()) * decayWeight(time.Duration(l.clock.Load()-stamp))
}
