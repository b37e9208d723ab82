package router

import (
	"math"
	"math/rand/v2"
	"slices"

	"github.com/hailsd/hail/events"
)

// Zone-aware routing (PROTOCOL v1.5), Envoy's rule: routers are taken to
// be spread evenly over the Z zones that hold the service's passing
// weight. A router whose zone holds at least 1/Z of that weight keeps all
// its requests at home; one whose zone holds f < 1/Z keeps f·Z of them and
// sends the rest to the zones holding more than 1/Z, in proportion to
// their surplus. Summed over the routers of every zone, each zone then
// gets exactly its share of the weight whenever some zone is short, so no
// instance carries more than its due; and with even spreads every request
// stays in its zone.

// zoneShares is the share of a router's requests each zone should get:
// weights are the zones' passing weight, home the index of the router's
// own zone (-1: not among them). The shares sum to 1 (all 0 when there is
// no weight at all). A router whose zone has no weight, or a service in
// one zone, gets the zones in proportion to their weight: the strategy
// over every instance.
func zoneShares(home int, weights []float64) []float64 {
	shares := make([]float64, len(weights))
	var total float64
	zones := 0
	for _, w := range weights {
		if w > 0 {
			total += w
			zones++
		}
	}
	if total == 0 {
		return shares
	}
	if home < 0 || home >= len(weights) || weights[home] <= 0 || zones == 1 {
		for i, w := range weights {
			shares[i] = max(w, 0) / total
		}
		return shares
	}
	even := 1 / float64(zones)
	f := weights[home] / total
	if f >= even {
		shares[home] = 1
		return shares
	}
	shares[home] = f * float64(zones)
	// The zones above 1/Z hold surplus f' - 1/Z, which sums to 1/Z - f
	// (> 0): the whole of what the short zones' routers send away.
	var surplus float64
	for i, w := range weights {
		if i != home && w/total > even {
			surplus += w/total - even
		}
	}
	for i, w := range weights {
		if i != home && w/total > even {
			shares[i] = (1 - shares[home]) * (w/total - even) / surplus
		}
	}
	return shares
}

// zonal picks a zone by zoneShares, then an instance by the route's
// strategy inside it. It exists only where the choice matters: the
// router's zone has passing weight and the service spans two or more.
type zonal struct {
	home Picker
	// keep is the share kept at home as a threshold on a uint64 draw;
	// all means every request (no draw at all, the usual case of even
	// spreads).
	keep uint64
	all  bool
	// others are the zones the rest goes to, with cumulative thresholds
	// on a second draw (the last is MaxUint64).
	others []Picker
	cum    []uint64
	// rest is the strategy over every instance outside the home zone:
	// where a request goes when its chosen zone cannot take it (every
	// instance there ejected or tried).
	rest Picker
}

// newZonePicker builds strategy over targets with the zone choice first
// for a router in zone home. Without a zone of its own among the
// targets', or with one zone only, it is the strategy alone.
func newZonePicker(strategy string, targets []*Target, factor float64, home string) (Picker, error) {
	var names []string
	byZone := map[string][]*Target{}
	for _, t := range targets {
		if _, ok := byZone[t.AZ]; !ok {
			names = append(names, t.AZ)
		}
		byZone[t.AZ] = append(byZone[t.AZ], t)
	}
	if _, ok := byZone[home]; !ok || home == "" || len(names) < 2 {
		return NewPicker(strategy, targets, factor)
	}
	slices.Sort(names)
	weights := make([]float64, len(names))
	homeAt := -1
	for i, n := range names {
		for _, t := range byZone[n] {
			weights[i] += float64(t.Weight)
		}
		if n == home {
			homeAt = i
		}
	}
	shares := zoneShares(homeAt, weights)
	z := &zonal{}
	var err error
	if z.home, err = NewPicker(strategy, byZone[home], factor); err != nil {
		return nil, err
	}
	var rest []*Target
	for _, t := range targets {
		if t.AZ != home {
			rest = append(rest, t)
		}
	}
	if z.rest, err = NewPicker(strategy, rest, factor); err != nil {
		return nil, err
	}
	if shares[homeAt] >= 1 {
		z.all = true
		return z, nil
	}
	z.keep = threshold(shares[homeAt])
	var acc float64
	for i, n := range names {
		if i == homeAt || shares[i] == 0 {
			continue
		}
		p, err := NewPicker(strategy, byZone[n], factor)
		if err != nil {
			return nil, err
		}
		acc += shares[i] / (1 - shares[homeAt])
		z.others = append(z.others, p)
		z.cum = append(z.cum, threshold(acc))
	}
	z.cum[len(z.cum)-1] = math.MaxUint64 // rounding never strands a draw
	return z, nil
}

// threshold maps a probability to a uint64 bound: a uniform draw falls
// below it with that probability.
func threshold(p float64) uint64 {
	if x := p * (1 << 64); x < 1<<64 {
		return uint64(x)
	}
	return math.MaxUint64
}

// mix64 is splitmix64's finalizer: a second uniform draw from a first.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func (z *zonal) Pick(key string, avoid func(*Target) bool) (*Target, error) {
	if z.all {
		if t, err := z.home.Pick(key, avoid); err == nil {
			return t, nil
		}
		return z.rest.Pick(key, avoid)
	}
	// A request with a hash key draws from the key, so that a key keeps
	// to one zone as it keeps to one instance; otherwise at random.
	var u, v uint64
	if key != "" {
		u = events.Hash64("zone#" + key)
		v = mix64(u) // a second draw from the same key
	} else {
		u, v = rand.Uint64(), rand.Uint64()
	}
	if u < z.keep {
		if t, err := z.home.Pick(key, avoid); err == nil {
			return t, nil
		}
		return z.rest.Pick(key, avoid)
	}
	i := 0
	for i < len(z.cum)-1 && v >= z.cum[i] {
		i++
	}
	if t, err := z.others[i].Pick(key, avoid); err == nil {
		return t, nil
	}
	if t, err := z.rest.Pick(key, avoid); err == nil {
		return t, nil
	}
	return z.home.Pick(key, avoid)
}
