package discovery_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
)

// Rolling deploys and autoscaling register and remove instances all day,
// each with a fresh id. 20,000 of them come and go in waves against one
// node: afterwards the node's registry is empty and holds no tombstones
// (each lives only until the watch passes its delete), and no deregistered
// instance came back through a late echo of its registration.
func TestChurnLeavesNoTombstones(t *testing.T) {
	const waves, perWave, workers = 10, 2000, 32
	e := newEnv(t)
	// Heartbeats are beside the point here; silent instances only put the
	// node into self-preservation.
	n, _ := e.StartNode(discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 2 * time.Second, Timeout: time.Second}}})
	reg := n.Registry()
	maxTombstones := 0
	for w := range waves {
		ids := make([]string, perWave)
		for i := range ids {
			ids[i] = uuid.NewString()
		}
		announce := func(id string) error {
			return e.ack(subjects.Announce("churn"), fmt.Appendf(nil, `{"id":%q,"service":"churn","endpoints":[{"name":"say"}]}`, id))
		}
		deregister := func(id string) error {
			return e.ack(subjects.Deregister("churn"), fmt.Appendf(nil, `{"id":%q,"service":"churn","reason":"churn"}`, id))
		}
		if w%2 == 0 {
			// A wave up, then down.
			e.each(ids, workers, announce)
			if got := reg.Len(); got != perWave {
				t.Fatalf("wave %d: %d records after %d announces", w, got, perWave)
			}
			e.each(ids, workers, deregister)
		} else {
			// Each instance gone right after it came: the watch's echo
			// of its registration often arrives after the delete, and
			// must not bring it back.
			e.each(ids, workers, func(id string) error { return errors.Join(announce(id), deregister(id)) })
		}
		maxTombstones = max(maxTombstones, reg.Tombstones())
	}
	// Once the watch has delivered every delete, nothing is left.
	bustest.Eventually(t, 30*time.Second, func() error {
		if got, tomb := reg.Len(), reg.Tombstones(); got != 0 || tomb != 0 {
			return fmt.Errorf("%d records and %d tombstones left", got, tomb)
		}
		return nil
	})
	if maxTombstones > perWave {
		t.Errorf("%d tombstones at the end of a wave of %d deletes", maxTombstones, perWave)
	}
	t.Logf("%d instances came and went; at most %d tombstones at once", waves*perWave, maxTombstones)
	keys, err := e.KV.Instances.ListKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for k := range keys.Keys() {
		t.Errorf("key %s left in hail_instances", k)
	}
	var recs []events.InstanceRecord
	if err := json.Unmarshal(e.request(subjects.DiscoveryInstances(), []byte(`{"service":"churn"}`)).Data, &recs); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 0 {
		t.Errorf("the node lists %d deregistered instances", len(recs))
	}
}

// each runs f for every id on workers goroutines and fails the test on
// the first error.
func (e *env) each(ids []string, workers int, f func(id string) error) {
	e.T.Helper()
	ch := make(chan string)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for id := range ch {
				if err := f(id); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for _, id := range ids {
		ch <- id
	}
	close(ch)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		e.T.Fatal(err)
	}
}

// ack sends a request and wants it taken (fakeinst.Ack: a 503 is tried
// again, as the SDK does).
func (e *env) ack(subject string, data []byte) error { return fakeinst.Ack(e.NC, subject, data) }
