package router

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// BenchmarkPick is the cost of one pick and its Done, per strategy and
// service size. Besides ns/op (the mean) it reports p50-ns: the median
// over batches of 1,000 picks, which leaves out GC pauses and scheduling.
func BenchmarkPick(b *testing.B) {
	for _, s := range []string{"weighted", "hash", "round_robin", "random", "least_conn", "p2c_ewma"} {
		for _, n := range []int{10, 100, 1000} {
			b.Run(fmt.Sprintf("%s/%d", s, n), func(b *testing.B) {
				ws := make([]int, n)
				for i := range ws {
					ws[i] = 100 + i%3*100
				}
				p, err := NewPicker(s, targets(ws...), 1.25)
				if err != nil {
					b.Fatal(err)
				}
				benchPicks(b, p)
			})
		}
	}
}

// benchPicks picks and ends picks on p for the benchmark, and reports the
// median over batches of 1,000 as p50-ns.
func benchPicks(b *testing.B, p Picker) {
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("user-%d", i)
	}
	const batch = 1000
	var batches []float64
	start := time.Now()
	// Attempts end "now" as far as latency decay goes: the
	// forwarder reads the clock for its own reasons anyway.
	done := Result{Latency: time.Millisecond, At: start}
	for i := 0; b.Loop(); i++ {
		t, err := p.Pick(keys[i%len(keys)], nil)
		if err != nil {
			b.Fatal(err)
		}
		t.Done(done)
		if i%batch == batch-1 {
			now := time.Now()
			batches = append(batches, float64(now.Sub(start).Nanoseconds())/batch)
			start = now
		}
	}
	if len(batches) > 0 {
		slices.Sort(batches)
		b.ReportMetric(batches[len(batches)/2], "p50-ns")
	}
}
