package discovery

import (
	"hash/maphash"
	"sync"

	"github.com/VictoriaMetrics/metrics"

	"github.com/hailsd/hail/events"
)

// repeatBytes bounds what repeats holds: about the bytes of the
// announces it remembers, each counted with its subject, its
// announceCost and repeatOverhead (an events.Announce alone is some 250
// bytes, its map slot and key more). Only announces of at most
// repeatMaxSize are kept: a v1 client's repeats are small.
const (
	repeatBytes    = 32 << 20
	repeatOverhead = 512
	repeatMaxSize  = 4 << 10
)

// repeats remembers the announces a node decoded and accepted, by their
// subject and bytes. A client announcing again sends the same bytes on
// the same subject (a v1 client every three intervals without a
// heartbeat, also while it waits its turn in the queue), and checking
// them again (size, subject, JSON, field rules, schema: a fifth of a
// node's CPU while 10,000 v1 instances registered, most of it on
// repeats) could only give the same answer: every check is a function of
// the subject and the bytes. What is done with the announce (the fast
// path, the queue) is not remembered; only its checks are skipped.
//
// An announce is known by two hashes of its subject and bytes under
// seeds of this process, 128 bits no sender can aim at, and its subject
// compared whole. Bounded by repeatBytes; forgotten whole when full (a
// repeat is soon sent again, and decoded once more). Safe for concurrent
// use.
type repeats struct {
	seeds [2]maphash.Seed
	max   int
	// hits counts the announces known (hail_discovery_announces_known_total).
	hits *metrics.Counter

	mu    sync.Mutex
	bytes int
	known map[[2]uint64]repeat
}

type repeat struct {
	subject string
	a       events.Announce
}

func newRepeats(maxBytes int, set *metrics.Set) *repeats {
	return &repeats{seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}, max: maxBytes, known: map[[2]uint64]repeat{},
		hits: set.GetOrCreateCounter("hail_discovery_announces_known_total")}
}

// sum is the key of an announce: its hashes under both seeds.
func (r *repeats) sum(subject string, data []byte) [2]uint64 {
	var k [2]uint64
	for i, seed := range r.seeds {
		var h maphash.Hash
		h.SetSeed(seed)
		_, _ = h.WriteString(subject)
		_ = h.WriteByte(0)
		_, _ = h.Write(data)
		k[i] = h.Sum64()
	}
	return k
}

// get returns the announce that subject and data decoded to before, if
// remembered, and the key to remember it under otherwise.
func (r *repeats) get(subject string, data []byte) (events.Announce, [2]uint64, bool) {
	k := r.sum(subject, data)
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.known[k]
	if !ok || e.subject != subject {
		return events.Announce{}, k, false
	}
	r.hits.Inc()
	return e.a, k, true
}

// put remembers a, decoded and accepted from size bytes on subject.
func (r *repeats) put(k [2]uint64, subject string, size int, a events.Announce) {
	cost := len(subject) + announceCost(size, a) + repeatOverhead
	if size > repeatMaxSize || cost > r.max {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.known[k]; ok {
		return
	}
	if r.bytes+cost > r.max {
		clear(r.known)
		r.bytes = 0
	}
	r.known[k] = repeat{subject: subject, a: a}
	r.bytes += cost
}

// announceCost is about the memory an announce of size bytes takes held
// decoded beside its bytes: twice its size, and 64 bytes more for each
// metadata entry, as a map entry of two short strings takes about 60 once
// decoded: 64 KiB of entries like "k1":"" decode to 5.4 times their size,
// where endpoints or long strings decode to about theirs.
func announceCost(size int, a events.Announce) int {
	return 2*size + 64*len(a.Metadata)
}
