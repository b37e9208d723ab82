package router

import (
	"math/rand/v2"
	"sort"
)

// random picks a target at random in proportion to its weight: a binary
// search of the cumulative weights. math/rand/v2's top-level functions are
// per-goroutine generators, so picks do not contend on a lock.
type random struct {
	targets []*Target
	cum     []uint64 // cum[i] = sum of weights of targets[0..i]
}

func newRandom(targets []*Target) *random {
	r := &random{targets: targets, cum: make([]uint64, len(targets))}
	var sum uint64
	for i, t := range targets {
		sum += uint64(t.Weight)
		r.cum[i] = sum
	}
	return r
}

func (r *random) Pick(_ string, avoid func(*Target) bool) (*Target, error) {
	if len(r.targets) == 0 {
		return nil, ErrNoInstance
	}
	total := r.cum[len(r.cum)-1]
	// A few draws find a usable target unless most are ruled out; then
	// fall back to the usable ones alone.
	for range 4 {
		x := rand.Uint64N(total)
		t := r.targets[sort.Search(len(r.cum), func(i int) bool { return r.cum[i] > x })]
		if t.ejected() || (avoid != nil && avoid(t)) {
			continue
		}
		t.acquire()
		return t, nil
	}
	usable := usable(r.targets, avoid)
	if len(usable) == 0 {
		return nil, ErrNoInstance
	}
	return newRandom(usable).Pick("", nil)
}

// usable is the targets neither ejected nor avoided.
func usable(targets []*Target, avoid func(*Target) bool) []*Target {
	var out []*Target
	for _, t := range targets {
		if !t.ejected() && (avoid == nil || !avoid(t)) {
			out = append(out, t)
		}
	}
	return out
}
