package router

import (
	"fmt"
	"math"
	"strconv"
	"testing"
	"time"
)

func TestZoneShares(t *testing.T) {
	tests := []struct {
		name    string
		home    int
		weights []float64
		want    []float64
	}{
		{"even spread stays home", 0, []float64{300, 300, 300}, []float64{1, 0, 0}},
		{"above its share stays home", 1, []float64{100, 500, 300}, []float64{0, 1, 0}},
		{"exactly 1/Z stays home", 0, []float64{100, 100, 100}, []float64{1, 0, 0}},
		// f = 1/7 of Z = 3: keep 3/7, the surplus zones (3/7 each, 2/21
		// above 1/3) share the rest equally.
		{"short zone spills by surplus", 0, []float64{100, 300, 300}, []float64{3.0 / 7, 2.0 / 7, 2.0 / 7}},
		// f = 0.1, Z = 3: keep 0.3; surpluses 0.6-1/3 and 0.3-1/3 (none):
		// all the rest to the one zone above 1/3.
		{"only zones above 1/Z take spill", 0, []float64{100, 600, 300}, []float64{0.3, 0.7, 0}},
		{"zone without weight does not count in Z", 0, []float64{100, 100, 0}, []float64{1, 0, 0}},
		{"home without instances: by weight", 0, []float64{0, 100, 300}, []float64{0, 0.25, 0.75}},
		{"no home zone: by weight", -1, []float64{100, 300}, []float64{0.25, 0.75}},
		{"one zone", 0, []float64{100}, []float64{1}},
		{"nothing anywhere", 0, []float64{0, 0}, []float64{0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := zoneShares(tt.home, tt.weights)
			sum := 0.0
			for i := range got {
				sum += got[i]
				if math.Abs(got[i]-tt.want[i]) > 1e-9 {
					t.Fatalf("zoneShares(%d, %v) = %v, want %v", tt.home, tt.weights, got, tt.want)
				}
			}
			if sum != 0 && math.Abs(sum-1) > 1e-9 {
				t.Errorf("shares sum to %g", sum)
			}
		})
	}
}

// zoneTargets makes n[i] targets of weight 100 in zone z<i>.
func zoneTargets(n ...int) []*Target {
	var ts []*Target
	for z, count := range n {
		for range count {
			t := newTarget(fmt.Sprintf("00000000-0000-4000-8000-%012d", len(ts)), 100)
			t.AZ = "z" + strconv.Itoa(z)
			ts = append(ts, t)
		}
	}
	return ts
}

// routeZones sends picks from one router in each zone (routers spread
// evenly, as v1.5 takes them to be) over the same instances, and returns
// the picks per target and the share that stayed in the router's zone.
func routeZones(t *testing.T, strategy string, ts []*Target, zones, perRouter int) (map[*Target]int, float64) {
	t.Helper()
	got := map[*Target]int{}
	home := 0
	for z := range zones {
		az := "z" + strconv.Itoa(z)
		p, err := newZonePicker(strategy, ts, 1.25, az)
		if err != nil {
			t.Fatal(err)
		}
		for i := range perRouter {
			key := ""
			if strategy == "hash" {
				key = "user-" + strconv.Itoa(z) + "-" + strconv.Itoa(i)
			}
			x, err := p.Pick(key, nil)
			if err != nil {
				t.Fatalf("%s: pick %d: %v", az, i, err)
			}
			x.Done(Result{Latency: time.Millisecond})
			got[x]++
			if x.AZ == az {
				home++
			}
		}
	}
	return got, float64(home) / float64(zones*perRouter)
}

// With three zones evenly spread, requests stay in their zone; with one
// zone down to one instance, no instance carries more than twice the
// average. For every strategy: the zone is chosen first.
func TestZoneLocalityAndSpill(t *testing.T) {
	const perRouter = 30000
	for _, s := range []string{"weighted", "hash", "round_robin", "random", "least_conn", "p2c_ewma"} {
		t.Run(s, func(t *testing.T) {
			_, inZone := routeZones(t, s, zoneTargets(3, 3, 3), 3, perRouter)
			if inZone < 0.95 {
				t.Errorf("even spread: %.3f of requests in zone, want >= 0.95", inZone)
			}
			ts := zoneTargets(1, 3, 3)
			got, inZone := routeZones(t, s, ts, 3, perRouter)
			avg := float64(3*perRouter) / float64(len(ts))
			for _, x := range ts {
				if float64(got[x]) > 2*avg {
					t.Errorf("one zone short: %s (%s) took %d picks, over twice the average %.0f", x.ID, x.AZ, got[x], avg)
				}
			}
			t.Logf("in zone %.3f (one zone short); picks %v", inZone, counts(ts, got))
		})
	}
}

func counts(ts []*Target, got map[*Target]int) []int {
	out := make([]int, len(ts))
	for i, x := range ts {
		out[i] = got[x]
	}
	return out
}

// A router whose zone has no instance that can take a request (none
// there, or all ejected or tried) still gets one from another zone.
func TestZoneWithoutInstanceRoutesAcross(t *testing.T) {
	for _, s := range []string{"weighted", "hash", "round_robin", "random", "least_conn", "p2c_ewma"} {
		t.Run(s, func(t *testing.T) {
			// No instance in z0 at all: the router in z0 uses the others.
			p, err := newZonePicker(s, zoneTargets(0, 2, 2), 1.25, "z0")
			if err != nil {
				t.Fatal(err)
			}
			for i := range 100 {
				if _, err := p.Pick("k"+strconv.Itoa(i), nil); err != nil {
					t.Fatalf("no instance at home: %v", err)
				}
			}
			// Every z0 instance ejected or tried.
			for _, short := range []bool{false, true} {
				n := []int{2, 2, 2}
				if short {
					n = []int{1, 3, 3} // the zonal picker that draws
				}
				ts := zoneTargets(n...)
				p, err := newZonePicker(s, ts, 1.25, "z0")
				if err != nil {
					t.Fatal(err)
				}
				ts[0].load.ejected.Store(true)
				avoid := func(x *Target) bool { return x.AZ == "z0" }
				for i := range 1000 {
					x, err := p.Pick("k"+strconv.Itoa(i), avoid)
					if err != nil {
						t.Fatalf("home zone out (%v): pick %d: %v", n, i, err)
					}
					if x.AZ == "z0" {
						t.Fatalf("picked %s in the zone that is out", x.ID)
					}
					x.Done(Result{Latency: time.Millisecond})
				}
			}
		})
	}
}

// A router without a zone, or instances without one, is one zone: the
// strategy alone.
func TestNoZoneIsTheStrategy(t *testing.T) {
	ts := zoneTargets(2, 2)
	for _, home := range []string{"", "elsewhere"} {
		p, err := newZonePicker("weighted", ts, 1.25, home)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := p.(*weighted); !ok {
			t.Errorf("router zone %q: picker %T, want the strategy's own", home, p)
		}
	}
}

// BenchmarkPickZonal is the cost of a pick with the zone choice first:
// "even" (three zones of 30, every request at home: no draw) and "short"
// (the router's zone holds 10 of 70: a draw, then a zone's picker).
func BenchmarkPickZonal(b *testing.B) {
	for _, s := range []string{"weighted", "hash", "p2c_ewma"} {
		for _, c := range []struct {
			name string
			n    []int
		}{{"even", []int{30, 30, 30}}, {"short", []int{10, 30, 30}}} {
			b.Run(s+"/"+c.name, func(b *testing.B) {
				p, err := newZonePicker(s, zoneTargets(c.n...), 1.25, "z0")
				if err != nil {
					b.Fatal(err)
				}
				benchPicks(b, p)
			})
		}
	}
}
