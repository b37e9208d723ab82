package discovery

import (
	"fmt"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
)

// Admission bounds a node's queue of announces (and the deregisters
// queued behind them, which keep their place in it).
//
// A client written from PROTOCOL v1 alone does not back off: whatever the
// node answers, it announces again after three intervals without a
// heartbeat. An announce the node drops (the shedding of before) is
// therefore sent again three intervals later, and a region that drops
// during a burst makes the burst come back. So the queue has two parts:
//
//   - the first answerMax announces (a fixed 1,024, not yet scaled to
//     the node's measured pace) are admitted: their senders wait, and
//     each is answered when it is applied;
//   - beyond them, up to holdMax items and holdBytes of announces, an
//     announce is deferred: answered at once with a 503 whose
//     retry_after_ms says when the queue should have drained to it, and
//     still applied in its turn, without a second answer. A v1 client that
//     ignores the 503 is registered and heartbeated (so it has no reason
//     to announce again); hail's SDK comes back after retry_after_ms and
//     finds itself registered, which the fast path answers at no cost.
//
// Beyond holdMax an announce is refused: the same 503, and dropped.
//
// While an announce of an instance not registered waits, the instance is
// heartbeated (held: soon after it is queued, then every two intervals,
// registrations.holdBeats): a v1 client counts three intervals from its
// last announce or heartbeat, and one that waits its turn in a long queue
// would announce again for nothing, which is the storm of [storm]. Hail's
// SDK takes the beat as any heartbeat (member.Beat): discovery is there;
// a change it has not had taken it still announces.
const (
	answerMax = 1024
	holdMax   = 64 << 10
	holdBytes = 32 << 20
	// A retry_after_ms is between these; the SDK reads at most a minute.
	minRetryAfter = 100 * time.Millisecond
	maxRetryAfter = 30 * time.Second
	// startRate is the pace (items per second) assumed until one is
	// measured: a cautious guess, well under what a node does.
	startRate = 1000.0
)

// keyQueued is what the queue holds of one instance key.
type keyQueued struct {
	n int // items queued or being applied
	// last is the announce queued last, when the last item is one.
	last     events.Announce
	announce bool
	// untaken is how many of the n are still queued (not taken).
	untaken int
	// hold: last is of an instance nothing else heartbeats (not
	// registered), held while an item of it is queued.
	hold bool
	// target is last's events.HeartbeatTarget, and beat when its
	// instance last heard from this node: zero until it is first held,
	// or again when it announced the same again (it heard nothing).
	target string
	beat   time.Time
	// looked: it is in admission.beatNow.
	looked bool
}

// beatDue is a held key's place in admission.beatsDue: due again every
// interval after at, if at is still its last beat.
type beatDue struct {
	k  *keyQueued
	at time.Time
}

// queued is an item of the queue: a decoded announce, or a deregister.
type queued struct {
	// m is what the answer goes to: for a deferred announce, already
	// answered, a copy without the reply subject.
	m   *nats.Msg
	key string
	a   events.Announce
	// dereg, when set, makes the item a deregister.
	dereg *events.Deregister
	// deferred: answered 503 when queued.
	deferred bool
	size     int
	// hold: heartbeat its instance while it waits (admission.held).
	hold bool
}

// outcome is what admission did with an announce.
type outcome int

const (
	admitted outcome = iota
	deferred
	refused
)

func (o outcome) String() string {
	switch o {
	case admitted:
		return "admitted"
	case deferred:
		return "deferred"
	}
	return "refused"
}

// admission is the queue between the announce and deregister
// subscriptions, which offer, and the node's loop, which takes and is
// done. It counts per key the items queued or being applied, which the
// fast path reads: an announce of a key with none may be answered from the
// registry without queueing, as nothing of that key can still change it.
// Safe for concurrent use.
type admission struct {
	answerMax, holdMax, holdBytes int

	mu    sync.Mutex
	items []queued // the queue is items[head:]
	head  int
	// waiting: admitted announces queued or being applied.
	waiting int
	bytes   int
	byKey   map[string]*keyQueued
	// beatNow and beatsDue are the held keys to look at, so that held
	// does not walk every queued key four times an interval (tens of
	// thousands in a burst): beatNow those whose beat was zeroed (held
	// anew, or announced the same again), beatsDue those beaten, in the
	// order of their beats, which is the order they fall due in. An
	// entry whose key was beaten since, or holds no more, is dropped
	// when reached.
	beatNow  []*keyQueued
	beatsDue []beatDue
	// scheduled: a drain job is in the node's work queue, or running.
	scheduled bool
	// rate is the measured pace: items applied per second of wall time
	// while the queue was not empty (EWMA).
	rate float64
	// lastDone is when the last batch was done with items left behind it;
	// zero when it emptied the queue.
	lastDone time.Time

	counts [refused + 1]*metrics.Counter
	// fast counts announces answered by the fast path, welcomed the
	// instances heartbeated at once on their registration.
	fast, welcomed *metrics.Counter
	// coalesced counts announces deferred without being queued: the same
	// announce of the instance was queued already.
	coalesced *metrics.Counter
	// heldBeats counts the heartbeats sent to instances whose announce
	// waits (held).
	heldBeats *metrics.Counter
}

func newAdmission(set *metrics.Set) *admission {
	q := &admission{answerMax: answerMax, holdMax: holdMax, holdBytes: holdBytes, byKey: map[string]*keyQueued{}, rate: startRate}
	for o := admitted; o <= refused; o++ {
		q.counts[o] = set.GetOrCreateCounter(fmt.Sprintf(`hail_discovery_admission_total{outcome=%q}`, o))
	}
	q.fast = set.GetOrCreateCounter("hail_discovery_announces_fast_total")
	q.welcomed = set.GetOrCreateCounter("hail_discovery_welcome_heartbeats_total")
	q.coalesced = set.GetOrCreateCounter("hail_discovery_announces_coalesced_total")
	q.heldBeats = set.GetOrCreateCounter("hail_discovery_queued_heartbeats_total")
	set.GetOrCreateGauge("hail_discovery_announces_queued", func() float64 {
		q.mu.Lock()
		defer q.mu.Unlock()
		return float64(len(q.items) - q.head)
	})
	return q
}

// offer queues it, an announce or a deregister, sent at now, and reports
// what became of it, how long its sender should wait before announcing
// again (for a 503), and whether the caller must schedule a drain. A
// deregister is never deferred: it waits its turn with its answer, or is
// refused when the queue is full.
func (q *admission) offer(it queued, now time.Time) (o outcome, retryAfter time.Duration, schedule bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := len(q.items) - q.head
	if k := q.byKey[it.key]; it.dereg == nil && k != nil && k.announce && sameAnnounce(k.last, it.a) {
		// The same announce is queued already, and will be applied in
		// its turn: a client announcing again because it waits (a v1
		// client does every 3 intervals) adds nothing to the queue, or a
		// burst would feed on itself.
		q.counts[deferred].Inc()
		q.coalesced.Inc()
		// It announced again because it heard nothing: beaten at the
		// next look.
		q.beatAtNextLook(k)
		return deferred, q.retryAfter(n), false
	}
	switch {
	case it.dereg == nil && q.waiting < q.answerMax && q.bytes+it.size <= q.holdBytes:
		o = admitted
		q.waiting++
	case n < q.holdMax && q.bytes+it.size <= q.holdBytes:
		o = admitted
		if it.dereg == nil {
			o = deferred
			it.deferred = true
			it.m = &nats.Msg{Subject: it.m.Subject}
		}
	default:
		o = refused
	}
	if it.dereg == nil {
		q.counts[o].Inc()
	}
	retryAfter = q.retryAfter(n + 1)
	if o == refused {
		return o, retryAfter, false
	}
	q.items = append(q.items, it)
	q.bytes += it.size
	k := q.byKey[it.key]
	if k == nil {
		k = &keyQueued{}
		q.byKey[it.key] = k
	}
	k.n++
	k.untaken++
	k.last, k.announce, k.hold = it.a, it.dereg == nil, it.dereg == nil && it.hold
	if k.hold {
		// Beaten at the next look: under a burst an announce may reach
		// the queue seconds after it was sent, and its sender counts
		// from the sending.
		k.target = events.HeartbeatTarget(it.a.Service, it.a.ID, it.a.Scoped)
		q.beatAtNextLook(k)
	}
	if !q.scheduled {
		q.scheduled, schedule = true, true
	}
	return o, retryAfter, schedule
}

// retryAfter is how long the queue takes, at the measured pace, to
// apply the first n items: bounded by minRetryAfter and maxRetryAfter.
func (q *admission) retryAfter(n int) time.Duration {
	d := time.Duration(float64(n) / q.rate * float64(time.Second))
	return min(max(d, minRetryAfter), maxRetryAfter)
}

// take removes up to most items from the head of the queue, for the loop
// to apply; done must follow.
func (q *admission) take(most int) []queued {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := min(most, len(q.items)-q.head)
	batch := make([]queued, k)
	copy(batch, q.items[q.head:q.head+k])
	for _, it := range batch {
		q.byKey[it.key].untaken-- // being applied: held no more
	}
	clear(q.items[q.head : q.head+k])
	q.head += k
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
		if cap(q.items) > 4*maxBurst {
			q.items = nil // a burst's array (up to holdMax items) is not kept for good
		}
	} else if q.head >= 1024 && q.head*2 >= len(q.items) {
		q.items = append(q.items[:0], q.items[q.head:]...)
		q.head = 0
	}
	return batch
}

// done records that batch, taken at the head, has been applied, and
// reports whether items are left (the caller schedules the next drain).
// registered says whether an announce's key is in the registry now (what
// follows of it then waits unheld, as its owner's rounds beat it; one
// whose create failed stays held); it is asked only of a key with more
// queued, under the queue's lock: the registry never takes that lock.
func (q *admission) done(batch []queued, now time.Time, registered func(key string) bool) (more bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, it := range batch {
		if k := q.byKey[it.key]; k.n > 1 {
			k.n--
			if it.dereg == nil && k.hold && registered(it.key) {
				k.hold = false
			}
		} else {
			delete(q.byKey, it.key)
		}
		if it.dereg == nil && !it.deferred {
			q.waiting--
		}
		q.bytes -= it.size
	}
	if !q.lastDone.IsZero() && len(batch) > 0 {
		if took := now.Sub(q.lastDone); took > 0 {
			q.rate = 0.7*q.rate + 0.3*float64(len(batch))/took.Seconds()
		}
	}
	if len(q.items) == q.head {
		q.scheduled, q.lastDone = false, time.Time{}
		return false
	}
	q.lastDone = now
	return true
}

// held returns, appended to targets, the heartbeat targets of the
// instances to hold: an announce of theirs waits in the queue (not yet
// taken to be applied), they are not registered, and they have not heard
// from this node since it was queued or since they announced the same
// again, or not for every or longer; and counts them as heard now. The
// caller heartbeats them (and counts heldBeats). An instance whose last
// item is a deregister is not heartbeated.
func (q *admission) held(now time.Time, every time.Duration, targets []string) []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	beat := func(k *keyQueued) {
		targets = append(targets, k.target)
		k.beat = now
		q.beatsDue = append(q.beatsDue, beatDue{k: k, at: now})
	}
	for _, k := range q.beatNow {
		k.looked = false
		if k.hold && k.untaken > 0 && k.beat.IsZero() {
			beat(k)
		}
	}
	clear(q.beatNow)
	q.beatNow = q.beatNow[:0]
	// Beaten at the same every, so due in the order beaten: the walk
	// stops at the first entry not yet due.
	due := 0
	for due < len(q.beatsDue) && now.Sub(q.beatsDue[due].at) >= every {
		d := q.beatsDue[due]
		due++
		if d.k.hold && d.k.untaken > 0 && d.k.beat.Equal(d.at) {
			beat(d.k)
		}
	}
	if due > 0 {
		rest := copy(q.beatsDue, q.beatsDue[due:])
		clear(q.beatsDue[rest:])
		q.beatsDue = q.beatsDue[:rest]
	}
	return targets
}

// beatAtNextLook zeroes k's beat and has held look at it next time.
func (q *admission) beatAtNextLook(k *keyQueued) {
	k.beat = time.Time{}
	if !k.looked {
		k.looked = true
		q.beatNow = append(q.beatNow, k)
	}
}

// pending is how many items of key are queued or being applied.
func (q *admission) pending(key string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if k := q.byKey[key]; k != nil {
		return k.n
	}
	return 0
}
