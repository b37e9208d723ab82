package bus_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus/embedded"
)

// BenchmarkKVCreate is what JetStream itself does for registrations: KV
// creates of 400-byte records (a registration's size) into a bucket like
// hail_instances (history 1), on one server and on a 3-server cluster
// with 3 replicas, from one connection with 32 (a discovery node's
// maxParallelWrites) and 256 creates in flight, nobody watching. It is
// the floor under a region's registration pace: the scale benchmark's
// region registers far fewer a second than this, so the KV is not what
// holds it back.
//
//	go test -run '^$' -bench BenchmarkKVCreate -benchtime 5000x ./bus/
func BenchmarkKVCreate(b *testing.B) {
	ctx := context.Background()
	for _, replicas := range []int{1, 3} {
		var url string
		if replicas == 3 {
			c, err := embedded.StartCluster(ctx, "kvbench", 3, b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(c.Shutdown)
			url = c.URLs()
		} else {
			s, err := embedded.StartServer(embedded.ServerOptions{Name: "kvbench", Port: -1, StoreDir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(s.Shutdown)
			url = s.ClientURL()
		}
		nc, err := nats.Connect(url)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			b.Fatal(err)
		}
		kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "bench", History: 1, Replicas: replicas})
		if err != nil {
			b.Fatal(err)
		}
		value := make([]byte, 400)
		for _, inFlight := range []int{32, 256} {
			b.Run(fmt.Sprintf("replicas=%d/in_flight=%d", replicas, inFlight), func(b *testing.B) {
				sem := make(chan struct{}, inFlight)
				var wg sync.WaitGroup
				for i := range b.N {
					sem <- struct{}{}
					wg.Go(func() {
						defer func() { <-sem }()
						if _, err := kv.Create(ctx, fmt.Sprintf("svc.%d.%d.%d", inFlight, b.N, i), value); err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
			})
		}
	}
}
