package discovery

import (
	"context"

	"github.com/hailsd/hail/registry"
)

// loadMembers takes in the live nodes as of the start (the follower of
// hail_nodes has loaded), and hands every change from then on to the
// loop. The follower's watch is made again when it closes or stalls, and
// what changed meanwhile comes as changes, so the members never go stale.
func (n *Node) loadMembers(ctx context.Context) error {
	select {
	case <-n.nodes.Ready():
	case <-ctx.Done():
		return ctx.Err()
	}
	// Subscribed first: a change seen both here and in the read below is
	// applied twice, which members.apply makes harmless.
	cancel := n.nodes.Subscribe(func(c registry.NodeChange) {
		if c.ID == n.id {
			if !c.Live && n.ready.Load() {
				// Its entry lapsed (the bucket had no leader for longer
				// than the TTL, say): say at once that it is alive, so
				// peers that saw it go take it back.
				n.refreshNow()
			}
			return
		}
		n.submitUrgent(ctx, func(ctx context.Context) {
			joined, left := n.members.apply(c.ID, c.Live)
			n.records.changeMembers(ctx, joined, left)
		})
	})
	context.AfterFunc(ctx, cancel)
	live := map[string]bool{}
	for _, id := range n.nodes.IDs() {
		live[id] = true
	}
	n.members.replace(live)
	return nil
}
