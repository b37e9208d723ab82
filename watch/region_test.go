package watch_test

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/console"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/internal/regiontest"
	"github.com/hailsd/hail/router"
)

// Under a running discovery node, router and console, every watch of
// every bucket is stalled (its consumer lost) and every bucket is deleted
// and made again: each program keeps running (regiontest checks that each
// returns no error when the test stops it), watches again and is back in
// sync with the bucket within seconds.
func TestProgramsFollowStalledAndRecreatedBuckets(t *testing.T) {
	r := regiontest.New(t)
	r.StartNode(discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 200 * time.Millisecond, Timeout: 100 * time.Millisecond}}})
	rt := r.StartRouter(router.DefaultConfig())
	region, srv := r.StartConsole(console.RegionConfig{})
	fakeinst.Start(t, r.URL, fakeinst.Options{Service: "echo"})
	js, err := jetstream.New(r.NC)
	if err != nil {
		t.Fatal(err)
	}

	// routed waits until the router and the console both hold strategy
	// as echo's route.
	routed := func(strategy string) {
		t.Helper()
		if _, err := r.KV.Config.Put(t.Context(), events.RouteConfigKey("echo"), fmt.Appendf(nil, `{"strategy":%q}`, strategy)); err != nil {
			t.Fatal(err)
		}
		bustest.Eventually(t, 15*time.Second, func() error {
			v := rt.Table().View("echo")
			if v == nil || v.Route.Strategy != strategy {
				return fmt.Errorf("router's view of echo %+v, want strategy %s", v, strategy)
			}
			if c, ok := region.Route("echo"); !ok || c.Strategy != strategy {
				return fmt.Errorf("console's route of echo %+v, want strategy %s", c, strategy)
			}
			return nil
		})
	}
	// nodesInSync waits until the console lists the nodes of hail_nodes.
	nodesInSync := func() {
		t.Helper()
		bustest.Eventually(t, 15*time.Second, func() error {
			keys, err := r.KV.Nodes.Keys(t.Context())
			if err != nil {
				return err
			}
			var listed []string
			for _, n := range region.Nodes() {
				listed = append(listed, n.ID)
			}
			slices.Sort(keys)
			if !slices.Equal(keys, listed) {
				return fmt.Errorf("console lists nodes %v, hail_nodes holds %v", listed, keys)
			}
			return nil
		})
	}
	// instancesInSync waits until the console's and the router's registries
	// hold what hail_instances holds.
	instancesInSync := func() {
		t.Helper()
		bustest.Eventually(t, 15*time.Second, func() error {
			var want []string
			for id := range r.Instances() {
				want = append(want, id)
			}
			slices.Sort(want)
			var console []string
			for _, v := range region.Instances(t.Context(), "") {
				console = append(console, v.ID)
			}
			if !slices.Equal(console, want) {
				return fmt.Errorf("hail_instances holds %v; the console %v", want, console)
			}
			if routed := rt.Table().View("echo") != nil; routed != (len(want) > 0) {
				return fmt.Errorf("hail_instances holds %v; the router has a view of echo: %v", want, routed)
			}
			return nil
		})
	}
	// alive fails unless the node answers and the console serves.
	alive := func() {
		t.Helper()
		r.Request(events.Subjects{}.DiscoveryServices(), struct{}{})
		resp, err := http.Get(srv.URL + "/api/nodes")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("console: /api/nodes %d", resp.StatusCode)
		}
	}

	routed("hash")
	nodesInSync()
	instancesInSync()

	// Every watch stalls: the server forgets every consumer of the three
	// buckets, while the buckets change.
	for _, b := range []string{bus.InstancesBucket, bus.NodesBucket, bus.ConfigBucket} {
		s, err := js.Stream(t.Context(), "KV_"+b)
		if err != nil {
			t.Fatal(err)
		}
		for c := range s.ListConsumers(t.Context()).Info() {
			if err := s.DeleteConsumer(t.Context(), c.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				t.Fatal(err)
			}
		}
	}
	fakeinst.Start(t, r.URL, fakeinst.Options{Service: "echo"})
	routed("random")
	nodesInSync()
	instancesInSync()
	alive()

	// Each bucket is deleted and made again (the node makes it again, as
	// it does for an operator's `nats kv del`), and its followers follow
	// the new one.
	for _, tc := range []struct {
		bucket string
		inSync func()
	}{
		{bus.ConfigBucket, func() { routed("round_robin") }},
		{bus.NodesBucket, nodesInSync},
		{bus.InstancesBucket, instancesInSync},
	} {
		if err := js.DeleteKeyValue(t.Context(), tc.bucket); err != nil {
			t.Fatal(err)
		}
		bustest.Eventually(t, 15*time.Second, func() error {
			_, err := js.KeyValue(t.Context(), tc.bucket)
			return err
		})
		tc.inSync()
		alive()
	}
}
