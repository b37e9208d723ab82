package discovery

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus"
)

// guardBuckets looks every few heartbeat intervals for the buckets and
// the events stream, and makes again any that was deleted (`nats kv del
// hail_instances`, say) so that announces and judgements keep being
// written instead of failing one by one. It cannot make the region whole:
// the records went with the bucket, and this node's watches and every
// router's followed the old stream. So it says so loudly and stays not
// ready (/readyz 503, hail_discovery_ready 0) until restarted; the
// restarted programs rebuild the registry from the instances' announces.
func (n *Node) guardBuckets(ctx context.Context) error {
	js, err := jetstream.New(n.nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	recreated := n.m.set.GetOrCreateCounter("hail_discovery_buckets_recreated_total")
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(3 * n.interval()):
		}
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		missing, err := n.kv.Missing(lctx, js)
		cancel()
		if err != nil {
			// No leader for a moment, a timeout: that says nothing of
			// whether they exist.
			n.log.Debug("look for the buckets", "err", err)
			continue
		}
		if len(missing) == 0 {
			continue
		}
		n.bucketsLost.Store(true)
		n.log.Error("buckets deleted under a running node: making them again, empty; this node stays not ready until restarted, and every hail program of the region should be restarted to rebuild the registry", "missing", missing)
		if _, err := bus.EnsureBuckets(ctx, n.nc, n.kv.Options); err != nil {
			n.log.Error("make the deleted buckets again", "missing", missing, "err", err)
			continue
		}
		recreated.Add(len(missing))
	}
}
