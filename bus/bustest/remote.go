package bustest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus"
)

// RemoteBucket makes hail_remote on one server as discovery makes it in a
// region (PROTOCOL v1.5), by sources with the subject transform, but
// sourcing for each of regions a local bucket <region>_instances that
// stands for that region's hail_instances: a put of <service>.<id> there
// arrives in hail_remote as <region>.<service>.<id>, and the source's
// activity keeps the region fresh, as across a leafnode. It returns the
// stand-ins by region.
func RemoteBucket(t testing.TB, nc *nats.Conn, regions ...string) map[string]jetstream.KeyValue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]jetstream.KeyValue{}
	var sources []*jetstream.StreamSource
	for _, r := range regions {
		kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: r + "_instances", History: 1})
		if err != nil {
			t.Fatalf("stand-in registry of %s: %v", r, err)
		}
		out[r] = kv
		sources = append(sources, &jetstream.StreamSource{Name: "KV_" + r + "_instances",
			SubjectTransforms: []jetstream.SubjectTransformConfig{{Source: "$KV." + r + "_instances.>", Destination: "$KV." + bus.RemoteBucket + "." + r + ".>"}}})
	}
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bus.RemoteBucket, History: 1, Sources: sources}); err != nil {
		t.Fatalf("create %s: %v", bus.RemoteBucket, err)
	}
	return out
}
