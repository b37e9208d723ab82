package registry_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/regiontest"
	"github.com/hailsd/hail/registry"
)

var remoteSize = flag.Int("remote-size", 50000, "BenchmarkRemoteFill: instances registered in the remote region")

// BenchmarkRemoteFill measures what one remote region of -remote-size
// instances costs the region that sources it (PROTOCOL v1.5): regions of
// one embedded server each, joined by leafnodes on loopback; us's
// hail_instances filled first, then the sourcing region's discovery node
// started with remote_regions us. direct: eu sources us over their link;
// via-hub: ap sources us through eu, which both link to (two links in
// the path). It reports the time from that start until eu's
// hail_remote holds every record (polled every 20 ms) and the stream's
// bytes; then the time a router's follower of hail_remote
// (registry.Remote) takes to load it and the heap it grows by; and the
// catch-up after a cut: a tenth of us's records rewritten while us is cut
// off, from the heal until the follower holds the last of them.
//
//	go test -run '^$' -bench RemoteFill -benchtime 1x ./registry/
func BenchmarkRemoteFill(b *testing.B) {
	for _, bc := range []struct {
		name    string
		regions []string // the first is the hub
		sink    string   // the region that sources us
	}{
		{"direct", []string{"eu", "us"}, "eu"},
		{"via-hub", []string{"eu", "us", "ap"}, "ap"},
	} {
		b.Run(bc.name, func(b *testing.B) { remoteFill(b, bc.regions, bc.sink) })
	}
}

func remoteFill(b *testing.B, regions []string, sink string) {
	n := *remoteSize
	for range b.N {
		l := regiontest.NewLinked(b, regions...)
		eu, us := l.Region(sink), l.Region("us")
		node := uuid.NewString()
		ids := make([]string, n)
		for i := range ids {
			ids[i] = uuid.NewString()
		}
		put := func(id string, gen int) {
			now := time.Now().UTC()
			rec := events.InstanceRecord{Announce: events.Announce{ID: id, Service: fmt.Sprintf("svc-%03d", gen%100), Version: "1.0.0",
				Endpoints: []events.Endpoint{{Name: "say"}, {Name: "slow"}}, Weight: 100, AZ: "us-a",
				Metadata: map[string]string{"host": "host-" + id[:8]}},
				Status: events.Passing, Node: node, Region: "us", RegisteredAt: now, UpdatedAt: now}
			data, _ := json.Marshal(rec)
			if _, err := us.KV.Instances.Put(context.Background(), rec.Key(), data); err != nil {
				b.Fatal(err)
			}
		}
		// services by index: the record of ids[i] is always of svc-(i%100).
		putAll := func(from, to int) {
			var next atomic.Int64
			next.Store(int64(from))
			var wg sync.WaitGroup
			for range 32 {
				wg.Go(func() {
					for i := int(next.Add(1) - 1); i < to; i = int(next.Add(1) - 1) {
						put(ids[i], i)
					}
				})
			}
			wg.Wait()
		}
		putAll(0, n)

		js, err := jetstream.New(eu.Connect())
		if err != nil {
			b.Fatal(err)
		}
		follower := registry.NewRemote(js, registry.RemoteConfig{})
		// Each record comes once in the load (no map of ids here: the
		// heap measured below is the follower's).
		var held atomic.Int64
		full := make(chan struct{}, 1)
		last := make(chan struct{}, 1)
		sentinel := uuid.NewString() // put last during the cut
		cancel := follower.Subscribe(func(c registry.RemoteChange) {
			if c.Freshness || c.Deleted {
				return
			}
			if held.Add(1) == int64(n) {
				full <- struct{}{}
			}
			if c.ID == sentinel {
				select {
				case last <- struct{}{}:
				default:
				}
			}
		})
		defer cancel()
		b.ResetTimer()
		start := time.Now()
		eu.StartNode(discovery.Config{RemoteRegions: []string{"us"}})
		var remote jetstream.Stream
		if err := bustest.PollEvery(5*time.Minute, 20*time.Millisecond, func() error {
			if remote == nil {
				if remote, err = js.Stream(context.Background(), "KV_"+bus.RemoteBucket); err != nil {
					return err
				}
			}
			info, err := remote.Info(context.Background())
			if err == nil && info.State.Msgs < uint64(n) {
				err = fmt.Errorf("hail_remote holds %d of %d records", info.State.Msgs, n)
			}
			return err
		}); err != nil {
			b.Fatal(err)
		}
		fill := time.Since(start)
		info, err := remote.Info(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(fill.Seconds(), "s-source")
		b.ReportMetric(float64(info.State.Bytes)/(1<<20), "MiB-hail_remote")
		b.ReportMetric(float64(info.State.Bytes)/float64(n), "B/record")

		// The router's side: a follower loading the filled bucket, and
		// what it holds.
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start = time.Now()
		stop := eu.Run("remote follower", follower.Run)
		select {
		case <-full:
		case <-time.After(5 * time.Minute):
			b.Fatalf("the follower holds %d of %d records after 5 minutes", held.Load(), n)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s-follower-load")
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/(1<<20), "MiB-follower-heap")

		// Catch-up: a tenth of the records rewritten while us is cut off,
		// then one more; the source delivers in order, so the last is
		// there when all are.
		l.Cut("us")
		putAll(0, n/10)
		put(sentinel, 0)
		healed := time.Now()
		l.Heal("us")
		select {
		case <-last:
		case <-time.After(5 * time.Minute):
			b.Fatal("the follower lacks the records put during the cut 5 minutes after the heal")
		}
		b.ReportMetric(time.Since(healed).Seconds(), "s-catchup-tenth")
		stop()
	}
}
