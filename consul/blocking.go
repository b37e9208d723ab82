package consul

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// limiter bounds the blocking queries waiting at once (http.max_blocking):
// each holds a connection and a goroutine, and a client that opens
// thousands must not take them from everyone else.
type limiter struct {
	n   atomic.Int64
	max int64
}

func (l *limiter) acquire() bool {
	if l.n.Add(1) > l.max {
		l.n.Add(-1)
		return false
	}
	return true
}

func (l *limiter) release() { l.n.Add(-1) }

// jittered adds up to 1/16 of wait, as Consul does, so clients that
// started together do not all come back together.
func jittered(wait time.Duration) time.Duration {
	if wait <= 0 {
		return 0
	}
	return wait + rand.N(wait/16+1)
}

// blocks reports whether a query for index must wait on an answer now at
// current: an index of 0 or behind answers at once.
func blocks(index, current uint64) bool { return index != 0 && index >= current }

// await waits until the index that idx reads from the snapshot load
// returns differs from the one it had at the start, or wait passes, or ctx
// ends; it returns the snapshot to answer with. changed is the snapshot's
// channel, closed when a newer snapshot replaces it: a snapshot that
// replaced it for another answer's sake (the health answers of a service
// whose catalog answer stayed) puts the waiter back to sleep on the new
// one.
func await[T any](ctx context.Context, wait time.Duration, load func() T, idx func(T) uint64, changed func(T) <-chan struct{}) T {
	cur := load()
	start := idx(cur)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return cur
		case <-timer.C:
			return load()
		case <-changed(cur):
			cur = load()
			if idx(cur) != start {
				return cur
			}
		}
	}
}
