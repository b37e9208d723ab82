package router

// newLeastConn favours the target with fewer requests in flight per unit of
// weight, choosing between two at random (see p2c).
func newLeastConn(targets []*Target) Picker {
	return &p2c{targets: targets, cost: func(t *Target) float64 {
		return float64(t.load.inflight.Load()+1) / float64(t.Weight)
	}}
}
