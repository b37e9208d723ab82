package watch_test

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/watch"
)

// follower is what a follower holds: the values by key, as a Handler
// keeps them, and every call it got.
type follower struct {
	mu      sync.Mutex
	values  map[string]string
	applied map[string]int // puts applied, by key
	resets  int
	synced  int
}

func newFollower() *follower {
	return &follower{values: map[string]string{}, applied: map[string]int{}}
}

func (f *follower) handler() watch.Handler {
	return watch.Handler{
		Apply: func(e watch.Entry) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if e.Deleted {
				delete(f.values, e.Key)
				return
			}
			f.values[e.Key] = string(e.Value)
			f.applied[e.Key]++
		},
		Synced: func() { f.mu.Lock(); f.synced++; f.mu.Unlock() },
		Reset:  func() { f.mu.Lock(); f.resets++; f.mu.Unlock() },
	}
}

// holds fails unless the follower holds exactly want.
func (f *follower) holds(want map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !maps.Equal(f.values, want) {
		return fmt.Errorf("follower holds %v, want %v", f.values, want)
	}
	return nil
}

type env struct {
	t   *testing.T
	js  jetstream.JetStream
	kv  jetstream.KeyValue
	set *metrics.Set
	f   *follower
}

// start makes bucket "t" holding initial and runs a watch of it, probing
// every 100 ms, until the test ends.
func start(t *testing.T, initial map[string]string) *env {
	nc := bustest.Connect(t, bustest.RunServer(t).ClientURL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, js: js, set: metrics.NewSet(), f: newFollower()}
	e.kv = e.bucket(initial)
	w := watch.New(e.kv, e.f.handler(), watch.Config{Metrics: e.set, ProbeEvery: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	bustest.Eventually(t, 10*time.Second, func() error { return e.f.holds(initial) })
	return e
}

func (e *env) bucket(values map[string]string) jetstream.KeyValue {
	// Made again right after a delete, the server may still be removing
	// the old stream's store (err_code 10049): tried again, as an
	// operator would.
	var kv jetstream.KeyValue
	bustest.Eventually(e.t, 10*time.Second, func() error {
		var err error
		kv, err = e.js.CreateKeyValue(e.t.Context(), jetstream.KeyValueConfig{Bucket: "t"})
		return err
	})
	for k, v := range values {
		if _, err := kv.PutString(e.t.Context(), k, v); err != nil {
			e.t.Fatal(err)
		}
	}
	return kv
}

// rewatched waits until the watch was made again for reason.
func (e *env) rewatched(reason string) {
	e.t.Helper()
	name := fmt.Sprintf(`hail_watch_rewatches_total{bucket="t",reason=%q}`, reason)
	bustest.Eventually(e.t, 15*time.Second, func() error {
		if e.set.GetOrCreateCounter(name).Get() == 0 {
			var b strings.Builder
			e.set.WritePrometheus(&b)
			return fmt.Errorf("%s not counted:\n%s", name, b.String())
		}
		return nil
	})
}

// A watch whose consumer is gone (it sits on a server the client cannot
// reach, say) delivers nothing while the bucket changes: it is found
// stalled and made again, and the follower gets what changed and nothing
// it had already.
func TestStalledWatchIsMadeAgain(t *testing.T) {
	e := start(t, map[string]string{"a": "1", "b": "1"})
	// The stall: the server forgets the watch's consumer.
	for name := range e.js.StreamNames(t.Context()).Name() {
		if name != "KV_t" {
			continue
		}
		s, err := e.js.Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		for c := range s.ListConsumers(t.Context()).Info() {
			if err := s.DeleteConsumer(t.Context(), c.Name); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := e.kv.Delete(t.Context(), "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.kv.PutString(t.Context(), "c", "1"); err != nil {
		t.Fatal(err)
	}
	e.rewatched("stalled")
	bustest.Eventually(t, 10*time.Second, func() error { return e.f.holds(map[string]string{"a": "1", "c": "1"}) })
	e.f.mu.Lock()
	defer e.f.mu.Unlock()
	if e.f.applied["a"] != 1 {
		t.Errorf("a applied %d times; the replay gave it again", e.f.applied["a"])
	}
	if e.f.synced < 2 || e.f.resets != 0 {
		t.Errorf("synced %d times, reset %d: want a second snapshot and no reset", e.f.synced, e.f.resets)
	}
}

// A bucket deleted and made again under a watch: the follower is told to
// forget its revisions, gets the new bucket's values (although their
// revisions are lower), and loses the keys the new bucket lacks.
func TestBucketMadeAgainIsFollowed(t *testing.T) {
	e := start(t, map[string]string{"a": "1", "b": "1", "x": "1"})
	for range 5 { // revisions the new bucket will not reach
		if _, err := e.kv.PutString(t.Context(), "x", "2"); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.js.DeleteKeyValue(t.Context(), "t"); err != nil {
		t.Fatal(err)
	}
	e.bucket(map[string]string{"a": "2", "c": "1"})
	e.rewatched("recreated")
	bustest.Eventually(t, 10*time.Second, func() error { return e.f.holds(map[string]string{"a": "2", "c": "1"}) })
	e.f.mu.Lock()
	if e.f.resets != 1 {
		t.Errorf("reset %d times, want 1", e.f.resets)
	}
	e.f.mu.Unlock()
	// And it follows the new bucket on.
	if _, err := e.kv.PutString(t.Context(), "d", "1"); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 10*time.Second, func() error { return e.f.holds(map[string]string{"a": "2", "c": "1", "d": "1"}) })
}
