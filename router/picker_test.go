package router

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"
)

func targets(weights ...int) []*Target {
	ts := make([]*Target, len(weights))
	for i, w := range weights {
		ts[i] = newTarget(fmt.Sprintf("00000000-0000-4000-8000-%012d", i), w)
	}
	return ts
}

// pickN picks n times, ending each pick at once, and counts picks by index.
func pickN(t testing.TB, p Picker, ts []*Target, n int, key func(i int) string) []int {
	t.Helper()
	idx := map[*Target]int{}
	for i, x := range ts {
		idx[x] = i
	}
	counts := make([]int, len(ts))
	for i := range n {
		k := ""
		if key != nil {
			k = key(i)
		}
		got, err := p.Pick(k, nil)
		if err != nil {
			t.Fatalf("pick %d: %v", i, err)
		}
		got.Done(Result{Latency: time.Millisecond})
		counts[idx[got]]++
	}
	return counts
}

func TestWeightedShares(t *testing.T) {
	tests := []struct {
		weights []int
		n       int
	}{
		{[]int{100, 200, 300}, 6000},
		{[]int{1, 1}, 10},
		{[]int{10000, 1}, 10001},
		{[]int{5, 3, 2}, 100},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.weights), func(t *testing.T) {
			ts := targets(tt.weights...)
			counts := pickN(t, newWeighted(ts), ts, tt.n, nil)
			sum := 0
			for _, w := range tt.weights {
				sum += w
			}
			for i, w := range tt.weights {
				want := float64(tt.n) * float64(w) / float64(sum)
				// EDF keeps every target within one pick of its share.
				if math.Abs(float64(counts[i])-want) > 1 {
					t.Errorf("target %d (weight %d): %d picks, want %.1f ±1", i, w, counts[i], want)
				}
			}
		})
	}
}

func TestWeightedIsSmooth(t *testing.T) {
	// Weights 2:1 give A A B or A B A in every window of 3, never a run
	// of one target's whole share.
	ts := targets(200, 100)
	counts := pickN(t, newWeighted(ts), ts, 3, nil)
	if counts[0] != 2 || counts[1] != 1 {
		t.Fatalf("first 3 picks: %v, want [2 1]", counts)
	}
}

func TestRoundRobinCycles(t *testing.T) {
	ts := targets(100, 300, 1)
	p := newRoundRobin(ts)
	for i := range 9 {
		got, err := p.Pick("", nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := ts[i%3]; got != want {
			t.Fatalf("pick %d: %s, want %s", i, got.ID, want.ID)
		}
	}
}

func TestRandomWithinBounds(t *testing.T) {
	ts := targets(100, 100, 100, 100)
	const n = 40000
	counts := pickN(t, newRandom(ts), ts, n, nil)
	// Binomial: sd = sqrt(n p (1-p)) ≈ 86.6; 5 sd is never reached by chance.
	sd := math.Sqrt(n * 0.25 * 0.75)
	for i, c := range counts {
		if math.Abs(float64(c)-n/4) > 5*sd {
			t.Errorf("target %d: %d picks, want %d ± %.0f", i, c, n/4, 5*sd)
		}
	}
}

func TestLeastConnFavoursFewerInflight(t *testing.T) {
	ts := targets(100, 100)
	p := newLeastConn(ts)
	for range 10 {
		ts[0].acquire() // target 0 is busy
	}
	for i := range 100 {
		got, err := p.Pick("", nil)
		if err != nil {
			t.Fatal(err)
		}
		got.Done(Result{})
		if got != ts[1] {
			t.Fatalf("pick %d went to the busy target", i)
		}
	}
}

func TestP2CEWMAAvoidsSlow(t *testing.T) {
	ts := targets(100, 100, 100)
	p := newP2CEWMA(ts)
	slow := ts[2]
	counts := make([]int, 3)
	for range 3000 {
		got, err := p.Pick("", nil)
		if err != nil {
			t.Fatal(err)
		}
		lat := 2 * time.Millisecond
		if got == slow {
			lat = 20 * time.Millisecond
		}
		got.Done(Result{Latency: lat})
		for j, x := range ts {
			if x == got {
				counts[j]++
			}
		}
	}
	if share := float64(counts[2]) / 3000; share > 0.2 {
		t.Fatalf("slow instance got %.0f%% of picks (%v), want at most 20%%", share*100, counts)
	}
}

func TestP2CEWMAPenalisesFastFailures(t *testing.T) {
	ts := targets(100, 100)
	p := newP2CEWMA(ts)
	for range 200 {
		got, err := p.Pick("", nil)
		if err != nil {
			t.Fatal(err)
		}
		if got == ts[0] {
			got.Done(Result{Latency: 100 * time.Microsecond, Failed: true}) // fails fast
		} else {
			got.Done(Result{Latency: 5 * time.Millisecond})
		}
	}
	var failing int
	for range 1000 {
		got, _ := p.Pick("", nil)
		got.Done(Result{})
		if got == ts[0] {
			failing++
		}
	}
	if failing > 100 {
		t.Fatalf("the fast-failing instance got %d of 1000 picks", failing)
	}
}

func TestPickersHonourAvoidAndEjection(t *testing.T) {
	for _, s := range []string{"weighted", "hash", "round_robin", "random", "least_conn", "p2c_ewma"} {
		t.Run(s, func(t *testing.T) {
			ts := targets(100, 100, 100)
			ts[0].load.ejected.Store(true)
			p, err := NewPicker(s, ts, 1.25)
			if err != nil {
				t.Fatal(err)
			}
			avoid := func(x *Target) bool { return x == ts[1] }
			for i := range 200 {
				got, err := p.Pick(fmt.Sprint("key-", i), avoid)
				if err != nil {
					t.Fatal(err)
				}
				got.Done(Result{})
				if got != ts[2] {
					t.Fatalf("pick %d: %s, want the only usable target", i, got.ID)
				}
			}
			all := func(*Target) bool { return true }
			if _, err := p.Pick("k", all); !errors.Is(err, ErrNoInstance) {
				t.Fatalf("every target ruled out: err %v, want ErrNoInstance", err)
			}
		})
	}
}

func TestEmptyPickers(t *testing.T) {
	for _, s := range []string{"weighted", "hash", "round_robin", "random", "least_conn", "p2c_ewma"} {
		p, err := NewPicker(s, nil, 1.25)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Pick("k", nil); !errors.Is(err, ErrNoInstance) {
			t.Errorf("%s with no targets: err %v, want ErrNoInstance", s, err)
		}
	}
}

func TestHashStableAndMinimalMove(t *testing.T) {
	ts := targets(100, 100, 100, 100, 100, 100, 100, 100, 100, 100)
	owner := func(p Picker, key string) string {
		got, err := p.Pick(key, nil)
		if err != nil {
			t.Fatal(err)
		}
		got.Done(Result{})
		return got.ID
	}
	ring := newHashRing(ts, 1.25, newWeighted(ts))
	again := newHashRing(targets(100, 100, 100, 100, 100, 100, 100, 100, 100, 100), 1.25, nil)
	before := map[string]string{}
	for i := range 1000 {
		k := fmt.Sprintf("user-%d", i)
		before[k] = owner(ring, k)
		if got := owner(ring, k); got != before[k] {
			t.Fatalf("key %s moved from %s to %s with no change", k, before[k], got)
		}
		if got := owner(again, k); got != before[k] {
			t.Fatalf("key %s: another ring over the same instances says %s, want %s", k, got, before[k])
		}
	}
	// Whichever instance leaves, only the keys it held move.
	for gi, g := range ts {
		rest := append(append([]*Target{}, ts[:gi]...), ts[gi+1:]...)
		after := newHashRing(rest, 1.25, nil)
		moved, held := 0, 0
		for k, was := range before {
			if was == g.ID {
				held++
				continue
			}
			if now := owner(after, k); now != was {
				moved++
			}
		}
		if moved != 0 {
			t.Errorf("removing %s moved %d keys it did not hold", g.ID, moved)
		}
		// Its share of the ring (about 1/N) plus the noise of drawing
		// 1,000 keys (binomial, sd about 9.5 keys).
		if held > 150 {
			t.Errorf("%s held %d of 1000 keys, want about 100", g.ID, held)
		}
	}
}

func TestHashBalance(t *testing.T) {
	ts := targets(100, 100, 100, 100, 100, 100, 100, 100, 100, 100)
	ring := newHashRing(ts, 0, nil)
	const n = 100000
	counts := pickN(t, ring, ts, n, func(i int) string { return fmt.Sprintf("user-%d", i) })
	for i, c := range counts {
		if share := float64(c) / n; share < 0.08 || share > 0.12 {
			t.Errorf("target %d holds %.3f of keys, want 0.1 ± 20%%", i, share)
		}
	}
}

func TestHashBoundedLoad(t *testing.T) {
	ts := targets(100, 100, 100, 100, 100, 100, 100, 100, 100, 100)
	var total atomic.Int64 // the service's in-flight sum
	for _, x := range ts {
		x.load.total = &total
	}
	ring := newHashRing(ts, 1.25, nil)
	zipf := rand.NewZipf(rand.New(rand.NewPCG(1, 2)), 1.2, 1, 999)
	var held []*Target
	for i := range 200 {
		got, err := ring.Pick(fmt.Sprintf("key-%d", zipf.Uint64()), nil)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, got)
		mean := float64(total.Load()) / float64(len(ts))
		for _, x := range ts {
			// Counts are whole: while every target is at its bound the
			// next request must still go somewhere.
			if float64(x.Inflight()) > max(minLimit, math.Ceil(1.25*mean)) {
				t.Fatalf("after %d picks %s holds %d in flight, mean %.2f", i+1, x.ID, x.Inflight(), mean)
			}
		}
	}
	for _, x := range held {
		x.Done(Result{})
	}
}

func TestHashWithoutKeyIsWeighted(t *testing.T) {
	ts := targets(100, 200, 300)
	p, err := NewPicker("hash", ts, 1.25)
	if err != nil {
		t.Fatal(err)
	}
	counts := pickN(t, p, ts, 600, nil)
	if counts[0] != 100 || counts[1] != 200 || counts[2] != 300 {
		t.Fatalf("picks without a key: %v, want [100 200 300]", counts)
	}
}

func TestRandomWeighted(t *testing.T) {
	ts := targets(100, 200, 300, 1)
	const n = 60000
	counts := pickN(t, newRandom(ts), ts, n, nil)
	for i, w := range []int{100, 200, 300, 1} {
		p := float64(w) / 601
		sd := math.Sqrt(n * p * (1 - p))
		if math.Abs(float64(counts[i])-n*p) > 5*sd {
			t.Errorf("target %d (weight %d): %d picks, want %.0f ± %.0f", i, w, counts[i], n*p, 5*sd)
		}
	}
}

func TestHashLightLoadStaysHome(t *testing.T) {
	ts := targets(100, 100, 100, 100, 100, 100, 100, 100, 100, 100)
	var total atomic.Int64
	for _, x := range ts {
		x.load.total = &total
	}
	ring := newHashRing(ts, 1.25, nil)
	// Two keys with the same home instance.
	home := map[*Target]string{}
	var a, b string
	for i := 0; b == ""; i++ {
		k := fmt.Sprintf("k-%d", i)
		got, err := ring.Pick(k, nil)
		if err != nil {
			t.Fatal(err)
		}
		got.Done(Result{})
		if other, ok := home[got]; ok {
			a, b = other, k
		}
		home[got] = k
	}
	first, _ := ring.Pick(a, nil) // held in flight
	second, _ := ring.Pick(b, nil)
	if first != second {
		t.Fatalf("with one request in flight, key %s left its home instance", b)
	}
}
