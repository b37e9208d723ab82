package router

import "sync/atomic"

// weighted is smooth weighted round robin: Envoy's earliest-deadline-first
// order (each target's next deadline is one over its weight after its
// last; the earliest goes next), computed once per snapshot into a cycle
// that picks walk with an atomic counter. So a pick takes no lock and costs
// the same at 10 or 1,000 instances, the order is deterministic and
// smooth (weights 2:1 give A B A, not A A B B), and over every cycle each
// target's share is exact.
//
// The cycle is one period of the EDF order (the sum of the weights over
// their greatest common divisor) but at most maxCycle picks; beyond that
// shares are exact to within one pick in maxCycle.
type weighted struct {
	targets []*Target
	cycle   []int32
	next    atomic.Uint64
}

const maxCycle = 1 << 16

func newWeighted(targets []*Target) *weighted {
	w := &weighted{targets: targets}
	if len(targets) == 0 {
		return w
	}
	g, sum := 0, 0
	for _, t := range targets {
		g = gcd(g, t.Weight)
		sum += t.Weight
	}
	n := min(sum/g, maxCycle)
	w.cycle = make([]int32, n)
	h := newEDF(targets)
	for i := range w.cycle {
		w.cycle[i] = h.next()
	}
	return w
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func (w *weighted) Pick(_ string, avoid func(*Target) bool) (*Target, error) {
	n := uint64(len(w.cycle))
	if n == 0 {
		return nil, ErrNoInstance
	}
	// Skipping ruled-out targets: after len(targets)+n steps every target
	// has come up at least once.
	for range n + uint64(len(w.targets)) {
		t := w.targets[w.cycle[(w.next.Add(1)-1)%n]]
		if t.ejected() || (avoid != nil && avoid(t)) {
			continue
		}
		t.acquire()
		return t, nil
	}
	return nil, ErrNoInstance
}

// edf is the earliest-deadline-first scheduler that lays out a cycle.
type edf struct {
	heap []edfEntry
	seq  uint64
}

type edfEntry struct {
	deadline float64
	step     float64 // 1 / weight
	// seq breaks ties in insertion order, so equal weights alternate.
	seq   uint64
	index int32
}

func newEDF(targets []*Target) *edf {
	h := &edf{heap: make([]edfEntry, len(targets)), seq: uint64(len(targets))}
	for i, t := range targets {
		step := 1 / float64(t.Weight)
		h.heap[i] = edfEntry{deadline: step, step: step, seq: uint64(i), index: int32(i)}
	}
	for i := len(h.heap)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
	return h
}

// next returns the index of the target with the earliest deadline and
// moves that deadline on.
func (h *edf) next() int32 {
	top := &h.heap[0]
	i := top.index
	top.deadline += top.step
	top.seq = h.seq
	h.seq++
	h.down(0)
	return i
}

func (h *edf) less(i, j int) bool {
	a, b := &h.heap[i], &h.heap[j]
	if a.deadline != b.deadline {
		return a.deadline < b.deadline
	}
	return a.seq < b.seq
}

func (h *edf) down(i int) {
	n := len(h.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			return
		}
		h.heap[i], h.heap[m] = h.heap[m], h.heap[i]
		i = m
	}
}
