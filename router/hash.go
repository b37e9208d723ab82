package router

import (
	"cmp"
	"math"
	"slices"
	"strconv"

	"github.com/hailsd/hail/events"
)

// hashRing is consistent hashing with bounded loads (Mirrokni, Thorup and
// Zadimoghaddam, 2016; HAProxy's hash-balance-factor).
//
// Each target owns min(2*weight, maxVnodes) points on a ring of 64-bit
// hashes; a key goes to the owner of the first point at or after its own
// hash. The points of a target depend only on its id, so a target leaving
// moves only the keys it held, and every router process builds the same
// ring (events.Hash64, no per-process seed). With a load factor c, a target takes
// a key only while its in-flight count is below c times its weighted share
// of the service's in-flight requests (this one included); otherwise the
// key walks on along the ring. So a hot key spills to its neighbours
// instead of piling up on one instance.
type hashRing struct {
	// points, sorted by hash, each with its owner: one cache line holds
	// both, which a lookup on a large ring notices.
	points []point
	// index[b] is the first point whose top indexBits bits are >= b, so a
	// lookup binary-searches a few points instead of the whole ring.
	index    []int32
	targets  []*Target
	share    []float64 // weight / total weight
	factor   float64
	fallback Picker
}

type point struct {
	hash  uint64
	owner int32
}

const (
	// vnodesPerWeight: 200 points for the default weight keep a target's
	// share of the ring within about 7% of its due (more points cost
	// memory and rebuild time; the keys a test draws add their own noise).
	vnodesPerWeight = 2
	// maxVnodes bounds one target's ring points: above weight 1000, weight
	// no longer changes a target's share of keys (the load bound still
	// uses the full weight).
	maxVnodes = 2000
	indexBits = 16
)

func newHashRing(targets []*Target, factor float64, fallback Picker) *hashRing {
	h := &hashRing{targets: targets, factor: factor, fallback: fallback, share: make([]float64, len(targets))}
	var total float64
	for _, t := range targets {
		total += float64(t.Weight)
	}
	var pts []point
	for i, t := range targets {
		h.share[i] = float64(t.Weight) / total
		for v := range min(vnodesPerWeight*t.Weight, maxVnodes) {
			pts = append(pts, point{events.Hash64(t.ID + "#" + strconv.Itoa(v)), int32(i)})
		}
	}
	slices.SortFunc(pts, func(a, b point) int {
		if a.hash != b.hash {
			return cmp.Compare(a.hash, b.hash)
		}
		// Equal hashes (never seen in practice) still order the same way
		// in every process.
		return cmp.Compare(targets[a.owner].ID, targets[b.owner].ID)
	})
	h.points = pts
	h.index = make([]int32, 1<<indexBits+1)
	j := 0
	for b := range 1 << indexBits {
		for j < len(pts) && pts[j].hash>>(64-indexBits) < uint64(b) {
			j++
		}
		h.index[b] = int32(j)
	}
	h.index[1<<indexBits] = int32(len(pts))
	return h
}

// first is the index of the first point at or after x, wrapping to 0.
func (h *hashRing) first(x uint64) int {
	b := x >> (64 - indexBits)
	lo, hi := int(h.index[b]), int(h.index[b+1])
	i, _ := slices.BinarySearchFunc(h.points[lo:hi], x, func(p point, x uint64) int { return cmp.Compare(p.hash, x) })
	i += lo
	if i == len(h.points) {
		i = 0
	}
	return i
}

func (h *hashRing) Pick(key string, avoid func(*Target) bool) (*Target, error) {
	if key == "" {
		return h.fallback.Pick("", avoid)
	}
	if len(h.points) == 0 {
		return nil, ErrNoInstance
	}
	i := h.first(events.Hash64(key))
	var total int64
	if l := h.targets[0].load.total; l != nil {
		total = l.Load()
	}
	var best *Target
	for range len(h.points) {
		ti := h.points[i].owner
		t := h.targets[ti]
		if i++; i == len(h.points) {
			i = 0
		}
		if t.ejected() || (avoid != nil && avoid(t)) {
			continue
		}
		if h.factor <= 0 {
			t.acquire()
			return t, nil
		}
		if t.tryAcquire(h.limit(ti, total)) {
			return t, nil
		}
		if best == nil || t.Inflight() < best.Inflight() {
			best = t
		}
	}
	if best == nil {
		return nil, ErrNoInstance
	}
	// Every target is at its bound (only while the service's in-flight
	// total is tiny): the least loaded takes it.
	best.acquire()
	return best, nil
}

// limit is target ti's in-flight bound with total requests already in
// flight: floor(c * (total+1) * share), so that after this request no
// target holds more than c times its share of the mean. It is never below
// minLimit: under light traffic two requests whose keys share a home
// instance both go there, instead of the second moving for a bound that
// means little at one request per instance.
func (h *hashRing) limit(ti int32, total int64) int64 {
	return max(minLimit, int64(math.Floor(h.factor*float64(total+1)*h.share[ti])))
}

const minLimit = 2
