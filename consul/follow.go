package consul

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/registry"
)

// DefaultDatacenter is the region's name when the server names no
// JetStream domain (PROTOCOL v1.5).
const DefaultDatacenter = "local"

// Datacenter is the region nc is in: its server's JetStream domain, else
// DefaultDatacenter.
func Datacenter(nc *nats.Conn) string {
	if d := nc.ConnectedDomain(); d != "" {
		return d
	}
	return DefaultDatacenter
}

// Follow runs v from a follower of its own (for a program that has none
// to share) until ctx ends: it opens hail_instances, waiting for a
// discovery node to create it, and reads only that bucket, so the
// program's user needs only the rights to read it.
func Follow(ctx context.Context, nc *nats.Conn, v *View, log *slog.Logger, invalid func()) error {
	kv, err := openInstances(ctx, nc, log)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	f := registry.NewFollower(kv, registry.FollowConfig{Logger: log, Invalid: invalid})
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return f.Run(gctx) })
	g.Go(func() error { return v.Run(gctx, f) })
	return g.Wait()
}

// openInstances returns hail_instances once it exists; it says once that
// it waits.
func openInstances(ctx context.Context, nc *nats.Conn, log *slog.Logger) (jetstream.KeyValue, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	delay := 100 * time.Millisecond
	for waited := false; ; waited = true {
		kv, err := js.KeyValue(ctx, bus.InstancesBucket)
		if err == nil {
			return kv, nil
		}
		if !waited {
			log.Warn("waiting for the registry bucket (is a discovery node running?)", "bucket", bus.InstancesBucket, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}
