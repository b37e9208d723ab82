package registry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/registry"
)

// The first load, decoded in batches on every core, applies the bucket
// as one at a time would: every valid record, each invalid one refused
// and counted (the last batch partial, a batch's invalid record in the
// middle), and the changes after it as they come.
func TestFollowerFirstLoad(t *testing.T) {
	for _, n := range []int{0, 3, 511, 512, 1300} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			nc := bustest.Connect(t, bustest.RunServer(t).ClientURL())
			kv := bustest.Buckets(t, nc).Instances
			ctx := t.Context()
			now := time.Now().UTC()
			record := func(i int) events.InstanceRecord {
				return events.InstanceRecord{
					Announce: events.Announce{ID: uuid.NewString(), Service: fmt.Sprintf("svc-%d", i%7), Endpoints: []events.Endpoint{{Name: "say"}}, Weight: events.DefaultWeight},
					Status:   events.Passing, Node: uuid.NewString(), RegisteredAt: now, UpdatedAt: now,
				}
			}
			put := func(key string, v []byte) {
				if _, err := kv.Put(ctx, key, v); err != nil {
					t.Fatal(err)
				}
			}
			bad := 0
			for i := range n {
				rec := record(i)
				data, _ := json.Marshal(rec)
				switch {
				case i == n/2 && n > 0:
					data, bad = []byte(`{"id":"`+rec.ID+`"`), bad+1 // not JSON
				case i == n-1 && n > 1:
					rec.Service, bad = "elsewhere", bad+1 // under another key
					data, _ = json.Marshal(rec)
				}
				put(fmt.Sprintf("svc-%d.%s", i%7, rec.ID), data)
			}
			var invalid atomic.Int64
			f := registry.NewFollower(kv, registry.FollowConfig{Invalid: func() { invalid.Add(1) }})
			ctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- f.Run(ctx) }()
			defer func() {
				cancel()
				<-done
			}()
			select {
			case <-f.Ready():
			case <-time.After(30 * time.Second):
				t.Fatal("not loaded within 30s")
			}
			if got := f.Len(); got != n-bad {
				t.Errorf("%d instances loaded, want %d", got, n-bad)
			}
			if got := invalid.Load(); got != int64(bad) {
				t.Errorf("%d invalid counted, want %d", got, bad)
			}
			later := record(0)
			data, _ := json.Marshal(later)
			put(later.Key(), data)
			bustest.Eventually(t, 10*time.Second, func() error {
				if _, ok := f.ByID(later.ID); !ok {
					return fmt.Errorf("a record put after the load is not applied")
				}
				return nil
			})
		})
	}
}
