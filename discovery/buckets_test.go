package discovery_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/internal/regiontest"
)

// A bucket deleted under a running node is made again, and the node says
// it is not ready instead of serving on from a registry that is gone (or
// exiting).
func TestDeletedBucketRecreatedAndNodeNotReady(t *testing.T) {
	for _, tc := range []struct {
		name   string
		delete func(js jetstream.JetStream) error
		stream string
	}{
		{"hail_instances", func(js jetstream.JetStream) error {
			return js.DeleteKeyValue(t.Context(), bus.InstancesBucket)
		}, "KV_" + bus.InstancesBucket},
		{"HAIL_EVENTS", func(js jetstream.JetStream) error { return js.DeleteStream(t.Context(), bus.EventsStream) }, bus.EventsStream},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := regiontest.New(t)
			set := metrics.NewSet()
			n, _ := r.StartNode(discovery.Config{Metrics: set, Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond}}})
			fakeinst.Start(t, r.URL, fakeinst.Options{Service: "echo"})
			js, err := jetstream.New(r.NC)
			if err != nil {
				t.Fatal(err)
			}
			if !n.Ready() {
				t.Fatal("not ready before the deletion")
			}
			if err := tc.delete(js); err != nil {
				t.Fatal(err)
			}
			bustest.Eventually(t, 10*time.Second, func() error {
				if n.Ready() {
					return errors.New("still ready")
				}
				if _, err := js.Stream(t.Context(), tc.stream); err != nil {
					return fmt.Errorf("stream %s: %w", tc.stream, err)
				}
				var s strings.Builder
				set.WritePrometheus(&s)
				if !strings.Contains(s.String(), "hail_discovery_buckets_recreated_total 1") {
					return errors.New("recreation not counted")
				}
				return nil
			})
			// Announces are written to the new bucket, not refused.
			in := fakeinst.Start(t, r.URL, fakeinst.Options{Service: "echo"})
			bustest.Eventually(t, 10*time.Second, func() error {
				_, err := r.Record("echo." + in.ID)
				return err
			})
		})
	}
}
