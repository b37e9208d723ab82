package router

import "math/rand/v2"

// p2c is the power of two choices (Mitzenmacher): draw two different
// targets at random and take the cheaper. It avoids the herd that "always
// the least loaded" causes when many routers share stale figures, at the
// cost of two loads per pick. least_conn and p2c_ewma differ only in cost.
type p2c struct {
	targets []*Target
	cost    func(t *Target) float64
}

func (p *p2c) Pick(_ string, avoid func(*Target) bool) (*Target, error) {
	ts := p.targets
	ok := func(t *Target) bool { return !t.ejected() && (avoid == nil || !avoid(t)) }
	switch len(ts) {
	case 0:
		return nil, ErrNoInstance
	case 1:
		if !ok(ts[0]) {
			return nil, ErrNoInstance
		}
		ts[0].acquire()
		return ts[0], nil
	}
	for range 4 {
		i := rand.IntN(len(ts))
		j := rand.IntN(len(ts) - 1)
		if j >= i {
			j++
		}
		a, b := ts[i], ts[j]
		switch okA, okB := ok(a), ok(b); {
		case okA && okB:
			if p.cost(b) < p.cost(a) {
				a = b
			}
		case okB:
			a = b
		case !okA:
			continue
		}
		a.acquire()
		return a, nil
	}
	rest := usable(ts, avoid)
	if len(rest) == 0 {
		return nil, ErrNoInstance
	}
	return (&p2c{targets: rest, cost: p.cost}).Pick("", nil)
}
