package router

import (
	"math"
	"time"
)

// newP2CEWMA is latency-aware selection as in Finagle and Linkerd: the cost
// of a target is its peak-EWMA latency times its requests in flight plus
// one, per unit of weight. A failed attempt counts as failurePenalty, so an
// instance that fails fast looks slow, not fast. Latency decays while an
// instance gets no traffic, so one that was slow gets tried again.
func newP2CEWMA(targets []*Target) Picker {
	return &p2c{targets: targets, cost: func(t *Target) float64 {
		return t.load.latency() * float64(t.load.inflight.Load()+1) / float64(t.Weight)
	}}
}

// decayWeight is how much of an EWMA survives d: exp(-d/ewmaDecay).
func decayWeight(d time.Duration) float64 {
	if d <= 0 {
		return 1
	}
	x := float64(d) / float64(ewmaDecay)
	if x < 0.01 {
		// The usual case under load (samples ms apart); 1-x is within
		// 0.005% of exp(-x) here and saves the exponential.
		return 1 - x
	}
	return math.Exp(-x)
}
