package bus_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/nats-io/nats.go/jetstream"
)

func TestEnsureBucketsSingleServer(t *testing.T) {
	s := bustest.RunServer(t)
	nc := bustest.Connect(t, s.ClientURL())
	ctx := t.Context()
	b, err := bus.EnsureBuckets(ctx, nc, bus.BucketOptions{NodeTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if b.Replicas != 1 {
		t.Errorf("replicas = %d, want 1 on a single server", b.Replicas)
	}
	// Running it again (a second node starting) must succeed and keep data.
	if _, err := b.Instances.Put(ctx, "echo.x", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	b2, err := bus.EnsureBuckets(ctx, nc, bus.BucketOptions{NodeTTL: time.Second})
	if err != nil {
		t.Fatalf("second EnsureBuckets: %v", err)
	}
	if _, err := b2.Instances.Get(ctx, "echo.x"); err != nil {
		t.Errorf("record lost by second EnsureBuckets: %v", err)
	}
	// Health and node events are kept for replay.
	if err := nc.Publish("hail.health.echo.x", []byte(`{"status":"passing"}`)); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 2*time.Second, func() error {
		info, err := b.Events.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != 1 || info.Config.MaxAge != bus.EventsMaxAge {
			return fmt.Errorf("%s holds %d messages, max age %v", bus.EventsStream, info.State.Msgs, info.Config.MaxAge)
		}
		return nil
	})
	for _, kv := range []jetstream.KeyValue{b.Instances, b.Nodes, b.Config} {
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.History() > 1 && kv.Bucket() != bus.ConfigBucket {
			t.Errorf("%s history = %d, want 1", kv.Bucket(), st.History())
		}
	}
}

// An entry in hail_nodes lapses once its node stops refreshing it.
func TestNodeEntryLapses(t *testing.T) {
	s := bustest.RunServer(t)
	nc := bustest.Connect(t, s.ClientURL())
	ctx := t.Context()
	b, err := bus.EnsureBuckets(ctx, nc, bus.BucketOptions{NodeTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	w, err := b.Nodes.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := b.Nodes.Put(ctx, "n1", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	// Refreshing keeps it alive past one TTL.
	put := time.Now()
	for time.Since(put) < 1500*time.Millisecond {
		if _, err := b.Nodes.Put(ctx, "n1", []byte("{}")); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Nodes.Get(ctx, "n1"); err != nil {
			t.Fatalf("refreshed entry gone: %v", err)
		}
		time.Sleep(200 * time.Millisecond) // the refresh cadence under test
	}
	// Then it lapses, and watchers are told.
	deadline := time.After(5 * time.Second)
	for {
		select {
		case e := <-w.Updates():
			if e != nil && e.Key() == "n1" && e.Operation() != jetstream.KeyValuePut {
				if _, err := b.Nodes.Get(ctx, "n1"); !errors.Is(err, jetstream.ErrKeyNotFound) {
					t.Errorf("after marker Get = %v, want not found", err)
				}
				return
			}
		case <-deadline:
			t.Fatal("no lapse marker for an unrefreshed node entry within 5s")
		}
	}
}

func TestClusterBucketsHaveThreeReplicas(t *testing.T) {
	c := bustest.RunCluster(t, 3)
	nc := bustest.Connect(t, c.URLs())
	b := bustest.Buckets(t, nc)
	if b.Replicas != 3 {
		t.Fatalf("replicas = %d, want 3", b.Replicas)
	}
	ctx := t.Context()
	st, err := b.Instances.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas; got != 3 {
		t.Errorf("stream replicas = %d", got)
	}
	info, err := b.Events.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 {
		t.Errorf("%s replicas = %d", bus.EventsStream, info.Config.Replicas)
	}
	if _, err := b.Instances.Put(ctx, "echo.a", []byte("{}")); err != nil {
		t.Fatal(err)
	}
}

func TestClusterRestartKeepsData(t *testing.T) {
	c := bustest.RunCluster(t, 3)
	nc := bustest.Connect(t, c.URLs())
	b := bustest.Buckets(t, nc)
	ctx := t.Context()
	if _, err := b.Instances.Put(ctx, "echo.a", []byte(`{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	c.Stop(0)
	bustest.Eventually(t, 10*time.Second, func() error {
		_, err := b.Instances.Put(ctx, "echo.b", []byte(`{}`))
		return err
	})
	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 10*time.Second, func() error {
		e, err := b.Instances.Get(ctx, "echo.a")
		if err != nil {
			return err
		}
		if string(e.Value()) != `{"v":1}` {
			return fmt.Errorf("value %s", e.Value())
		}
		return nil
	})
}

func TestBackoffBounded(t *testing.T) {
	for a := range 20 {
		d := bus.Backoff(a)
		if d <= 0 || d > 2*time.Second {
			t.Fatalf("Backoff(%d) = %v", a, d)
		}
	}
}

// A two-server cluster cannot hold three replicas; auto mode settles on
// two instead of failing.
func TestBucketsFallBackOnSmallCluster(t *testing.T) {
	c := bustest.RunCluster(t, 2)
	nc := bustest.Connect(t, c.URLs())
	b := bustest.Buckets(t, nc)
	if b.Replicas != 2 {
		t.Errorf("replicas = %d on a 2-server cluster, want 2", b.Replicas)
	}
}

// Whoever may write a bucket cannot fill the servers with it: a value
// over a control message is refused, and the event stream keeps each
// subject's last events only.
func TestBucketsBounded(t *testing.T) {
	nc := bustest.Connect(t, bustest.RunServer(t).ClientURL())
	kv := bustest.Buckets(t, nc)
	if _, err := kv.Instances.Put(t.Context(), "echo.x", make([]byte, 70<<10)); err == nil {
		t.Error("a 70 KiB value was stored in hail_instances")
	}
	if _, err := kv.Instances.Put(t.Context(), "echo.y", []byte("{}")); err != nil {
		t.Errorf("a small value: %v", err)
	}
	info, err := kv.Events.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if c := info.Config; c.MaxMsgsPerSubject != bus.EventsMaxPerSubject || c.MaxBytes != bus.EventsMaxBytes || c.MaxMsgSize != bus.EventsMaxMsgSize {
		t.Errorf("events stream limits %d per subject, %d bytes, %d per message", c.MaxMsgsPerSubject, c.MaxBytes, c.MaxMsgSize)
	}
	// One instance's events keep its own history only: its 1,001st
	// pushes out its first, nobody else's; an event of 60 KB is refused.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := js.Publish(ctx, "hail.health.echo.other", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	for range bus.EventsMaxPerSubject + 1 {
		if _, err := js.Publish(ctx, "hail.health.echo.noisy", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.Publish(ctx, "hail.health.echo.noisy", make([]byte, 60<<10)); err == nil {
		t.Error("a 60 KB event was stored in HAIL_EVENTS")
	}
	info, err = kv.Events.Info(ctx, jetstream.WithSubjectFilter("hail.health.>"))
	if err != nil {
		t.Fatal(err)
	}
	if got := info.State.Subjects; got["hail.health.echo.other"] != 1 || got["hail.health.echo.noisy"] != bus.EventsMaxPerSubject {
		t.Errorf("events kept per subject: %v", got)
	}
}

// A stream made before the limits (by an older discovery) is updated to
// them when a node starts.
func TestEventsStreamLimitsUpdated(t *testing.T) {
	nc := bustest.Connect(t, bustest.RunServer(t).ClientURL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: bus.EventsStream, Subjects: []string{"hail.health.>", "hail.node.>"},
		MaxAge: bus.EventsMaxAge, MaxBytes: bus.EventsMaxBytes, MaxMsgSize: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	b, err := bus.EnsureBuckets(ctx, nc, bus.BucketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := b.Events.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c := info.Config; c.MaxMsgsPerSubject != bus.EventsMaxPerSubject || c.MaxMsgSize != bus.EventsMaxMsgSize {
		t.Errorf("an existing stream keeps %d per subject and %d bytes per message", c.MaxMsgsPerSubject, c.MaxMsgSize)
	}
}
