package router

import "sync/atomic"

// roundRobin cycles through the targets in order, ignoring weights (a
// weight of 0 still keeps a target out: the table never offers it).
type roundRobin struct {
	targets []*Target
	next    atomic.Uint64
}

func newRoundRobin(targets []*Target) *roundRobin { return &roundRobin{targets: targets} }

func (r *roundRobin) Pick(_ string, avoid func(*Target) bool) (*Target, error) {
	n := uint64(len(r.targets))
	for range n {
		t := r.targets[(r.next.Add(1)-1)%n]
		if t.ejected() || (avoid != nil && avoid(t)) {
			continue
		}
		t.acquire()
		return t, nil
	}
	return nil, ErrNoInstance
}
