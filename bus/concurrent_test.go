package bus_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
)

// Several discovery nodes start at once on a fresh cluster: all of them
// get the buckets.
func TestEnsureBucketsConcurrently(t *testing.T) {
	c := bustest.RunCluster(t, 3)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range 3 {
		nc := bustest.Connect(t, c.ClientURL(i))
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, errs[i] = bus.EnsureBuckets(ctx, nc, bus.BucketOptions{})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("node %d: %v", i, err)
		}
	}
}
