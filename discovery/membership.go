package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/events"
)

// nodeUpdates is a watch of hail_nodes.
type nodeUpdates = jetstream.KeyWatcher

// nodeWatch follows hail_nodes for a node. It knows nothing of the node:
// it hands each change to a callback.
type nodeWatch struct {
	kv       jetstream.KeyValue
	interval func() time.Duration
	log      *slog.Logger
}

// start opens the watch; it lives as long as ctx.
func (w nodeWatch) start(ctx context.Context) (nodeUpdates, error) {
	nw, err := w.kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch bucket %s: %w", bus.NodesBucket, err)
	}
	return nw, nil
}

// initial reads the watch's initial values: the nodes live now.
func (w nodeWatch) initial(ctx context.Context, nw nodeUpdates) (map[string]bool, error) {
	live := map[string]bool{}
	for {
		select {
		case e, ok := <-nw.Updates():
			if !ok {
				return nil, fmt.Errorf("watch bucket %s closed while loading", bus.NodesBucket)
			}
			if e == nil {
				return live, nil
			}
			if member(e) {
				live[e.Key()] = true
			} else {
				delete(live, e.Key())
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// follow hands each change to apply until ctx ends. Every live node
// refreshes its entry each interval, so a watch that delivers nothing for
// several intervals has stalled (its consumer sits on a server this node
// can no longer reach, which nats.go notices only after 10 s): the watch
// is made anew, and its initial values go to replace as the whole set.
func (w nodeWatch) follow(ctx context.Context, nw nodeUpdates, apply func(id string, live bool), replace func(map[string]bool)) error {
	stallAfter := func() time.Duration { return 3 * w.interval() }
	quiet := time.NewTimer(stallAfter())
	defer quiet.Stop()
	defer func() { _ = nw.Stop() }()
	var replay map[string]bool // non-nil while a new watch replays the bucket
	for {
		select {
		case e, ok := <-nw.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("watch bucket %s closed", bus.NodesBucket)
			}
			quiet.Reset(stallAfter())
			switch {
			case replay != nil && e == nil:
				replace(replay)
				replay = nil
			case replay != nil:
				if member(e) {
					replay[e.Key()] = true
				} else {
					delete(replay, e.Key())
				}
			case e != nil:
				apply(e.Key(), member(e))
			}
		case <-quiet.C:
			// Even alone the node sees its own refreshes, so silence
			// means the watch (or the bucket) is stuck.
			quiet.Reset(stallAfter())
			// The watch lives as long as ctx, so no shorter context here
			// (the JetStream API bounds the call by its own timeout).
			fresh, err := w.kv.WatchAll(ctx)
			if err != nil {
				w.log.Warn("renew stalled watch", "bucket", bus.NodesBucket, "err", err)
				continue
			}
			w.log.Warn("watch of live nodes stalled; renewed it", "bucket", bus.NodesBucket)
			_ = nw.Stop()
			nw, replay = fresh, map[string]bool{}
		case <-ctx.Done():
			return nil
		}
	}
}

// member reports whether a hail_nodes entry stands for a live node: a put
// under a UUID key holding a valid NodeRecord of that id. Anything else
// (an entry someone forged, garbage) counts as no node: it cannot take
// instances away from the real ones.
func member(e jetstream.KeyValueEntry) bool {
	if e.Operation() != jetstream.KeyValuePut || events.ValidateID(e.Key()) != nil {
		return false
	}
	rec, err := events.DecodeNodeRecord(e.Value())
	return err == nil && rec.ID == e.Key()
}
