package router

import "math/rand/v2"

// random picks a target at random in proportion to its weight, in O(1) by
// Vose's alias method: draw a column, then either its own target or its
// alias by a biased coin. math/rand/v2's top-level functions use
// per-goroutine state, so picks do not contend on a lock.
type random struct {
	targets []*Target
	prob    []float64 // chance of keeping column i's own target
	alias   []int32
}

func newRandom(targets []*Target) *random {
	n := len(targets)
	r := &random{targets: targets, prob: make([]float64, n), alias: make([]int32, n)}
	var sum float64
	for _, t := range targets {
		sum += float64(t.Weight)
	}
	scaled := make([]float64, n)
	var small, large []int32
	for i, t := range targets {
		scaled[i] = float64(t.Weight) * float64(n) / sum
		if scaled[i] < 1 {
			small = append(small, int32(i))
		} else {
			large = append(large, int32(i))
		}
	}
	for len(small) > 0 && len(large) > 0 {
		s, l := small[len(small)-1], large[len(large)-1]
		small, large = small[:len(small)-1], large[:len(large)-1]
		r.prob[s], r.alias[s] = scaled[s], l
		scaled[l] -= 1 - scaled[s]
		if scaled[l] < 1 {
			small = append(small, l)
		} else {
			large = append(large, l)
		}
	}
	// What is left is 1 up to rounding.
	for _, i := range append(small, large...) {
		r.prob[i], r.alias[i] = 1, i
	}
	return r
}

func (r *random) Pick(_ string, avoid func(*Target) bool) (*Target, error) {
	n := len(r.targets)
	if n == 0 {
		return nil, ErrNoInstance
	}
	// A few draws find a usable target unless most are ruled out; then
	// fall back to the usable ones alone.
	for range 4 {
		i := rand.IntN(n)
		if rand.Float64() >= r.prob[i] {
			i = int(r.alias[i])
		}
		t := r.targets[i]
		if t.ejected() || (avoid != nil && avoid(t)) {
			continue
		}
		t.acquire()
		return t, nil
	}
	rest := usable(r.targets, avoid)
	if len(rest) == 0 {
		return nil, ErrNoInstance
	}
	return newRandom(rest).Pick("", nil)
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
