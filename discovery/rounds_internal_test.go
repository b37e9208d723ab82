package discovery

import (
	"context"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/hailsd/hail/heartbeat"
	"github.com/hailsd/hail/registry"
)

// While a round's writes are out, the rounds that come wait: the newest
// replaces one that waits (counted as skipped), and is judged when the
// writes are taken in.
func TestRoundsWaitForTheWritesBeforeThem(t *testing.T) {
	set := metrics.NewSet()
	r := &rounds{m: newNodeMetrics(set, registry.New(), func() bool { return true }), writing: true}
	t0 := time.Now()
	rounds := []struct {
		start   time.Time
		results []heartbeat.Result
	}{
		{t0, []heartbeat.Result{{ID: "a"}}},
		{t0.Add(time.Second), []heartbeat.Result{{ID: "b"}}},
		{t0.Add(2 * time.Second), []heartbeat.Result{{ID: "c"}}},
	}
	for i, rd := range rounds {
		r.handle(context.Background(), rd.start, rd.results)
		if r.next == nil || !r.next.start.Equal(rd.start) || r.next.results[0].ID != rd.results[0].ID {
			t.Fatalf("after round %d the waiting round is %+v, want round %d", i, r.next, i)
		}
		if got := r.m.skipped.Get(); got != uint64(i) {
			t.Fatalf("after round %d, %d skipped, want %d", i, got, i)
		}
	}
}
