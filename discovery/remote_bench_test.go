package discovery_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/regiontest"
)

// BenchmarkRemoteLag measures hail_remote's lag (PROTOCOL v1.5): from a
// put in us's hail_instances to the entry read in eu's hail_remote, one
// put at a time, over a leafnode on loopback; then the catch-up after a
// cut, from the heal to the last of the records put meanwhile.
//
//	go test -run '^$' -bench RemoteLag -benchtime 1000x ./discovery/
func BenchmarkRemoteLag(b *testing.B) {
	l := regiontest.NewLinked(b, "eu", "us")
	eu, us := l.Region("eu"), l.Region("us")
	eu.StartNode(discovery.Config{RemoteRegions: []string{"us"}})
	js, err := jetstream.New(eu.NC)
	if err != nil {
		b.Fatal(err)
	}
	var remote jetstream.KeyValue
	bustest.Eventually(b, 30*time.Second, func() error {
		remote, err = js.KeyValue(context.Background(), discovery.RemoteBucket)
		return err
	})
	w, err := remote.Watch(context.Background(), "us.>", jetstream.UpdatesOnly())
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	node := uuid.NewString()
	put := func(id string) {
		rec := events.InstanceRecord{Announce: events.Announce{ID: id, Service: "echo", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100},
			Status: events.Passing, Node: node, Region: "us", RegisteredAt: time.Now().UTC(), UpdatedAt: time.Now().UTC()}
		data, _ := json.Marshal(rec)
		if _, err := us.KV.Instances.Put(context.Background(), rec.Key(), data); err != nil {
			b.Fatal(err)
		}
	}
	await := func(key string) {
		for {
			select {
			case e := <-w.Updates():
				if e != nil && e.Key() == key {
					return
				}
			case <-time.After(30 * time.Second):
				b.Fatalf("%s not in eu's hail_remote after 30s", key)
			}
		}
	}
	lags := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		id := uuid.NewString()
		start := time.Now()
		put(id)
		await("us.echo." + id)
		lags = append(lags, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lags)
	b.ReportMetric(float64(lags[len(lags)/2].Microseconds())/1000, "ms-p50")
	b.ReportMetric(float64(lags[len(lags)*99/100].Microseconds())/1000, "ms-p99")

	// Catch-up: 1,000 records put while us is cut off.
	l.Cut("us")
	var last string
	for range 1000 {
		last = uuid.NewString()
		put(last)
	}
	start := time.Now()
	l.Regions.Heal("us")
	await("us.echo." + last)
	b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms-catchup-1000")
}
