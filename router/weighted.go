package router

import "sync"

// weighted is Envoy's earliest-deadline-first scheduler: each target's
// next deadline is one over its weight later than its last, and the
// earliest deadline is picked. Over any run of picks every target's share
// is within one pick of its weight's share, the order is deterministic, and
// a pick costs O(log n) under one short lock.
type weighted struct {
	mu   sync.Mutex
	heap []edfEntry
	seq  uint64
}

type edfEntry struct {
	deadline float64
	// seq breaks ties in insertion order, so equal weights alternate.
	seq uint64
	t   *Target
}

func newWeighted(targets []*Target) *weighted {
	w := &weighted{heap: make([]edfEntry, len(targets))}
	for i, t := range targets {
		w.heap[i] = edfEntry{deadline: 1 / float64(t.Weight), seq: uint64(i), t: t}
	}
	w.seq = uint64(len(targets))
	for i := len(w.heap)/2 - 1; i >= 0; i-- {
		w.down(i)
	}
	return w
}

func (w *weighted) Pick(_ string, avoid func(*Target) bool) (*Target, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for range w.heap {
		top := &w.heap[0]
		t := top.t
		top.deadline += 1 / float64(t.Weight)
		top.seq = w.seq
		w.seq++
		w.down(0)
		if t.ejected() || (avoid != nil && avoid(t)) {
			continue
		}
		t.acquire()
		return t, nil
	}
	return nil, ErrNoInstance
}

func (w *weighted) less(i, j int) bool {
	a, b := &w.heap[i], &w.heap[j]
	if a.deadline != b.deadline {
		return a.deadline < b.deadline
	}
	return a.seq < b.seq
}

func (w *weighted) down(i int) {
	n := len(w.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && w.less(r, l) {
			m = r
		}
		if !w.less(m, i) {
			return
		}
		w.heap[i], w.heap[m] = w.heap[m], w.heap[i]
		i = m
	}
}
