package registry

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/watch"
)

// NodeChange is one change to hail_nodes as the live nodes go.
type NodeChange struct {
	ID string
	// Live: the entry stands for a live node; false when it went (or
	// stands for nothing: a forged or garbled entry).
	Live   bool
	Record events.NodeRecord // zero when not Live
	// Joined: the node was not live before, or started again (its
	// record's start time changed). A node refreshes its entry every
	// heartbeat interval; the rest are those refreshes.
	Joined bool
}

// Nodes follows hail_nodes: the live discovery nodes. A program shares
// one: a discovery node divides the instances among them, the console
// lists them.
type Nodes struct {
	w      *watch.Watch
	log    *slog.Logger
	ready  chan struct{}
	loaded bool // owned by the watch's goroutine
	subs   subscribers[NodeChange]

	mu   sync.RWMutex
	live map[string]events.NodeRecord
}

// NewNodes makes a follower of kv (hail_nodes); Run follows it.
func NewNodes(kv jetstream.KeyValue, cfg FollowConfig) *Nodes {
	cfg.setDefaults()
	n := &Nodes{log: cfg.Logger.With("component", "nodes"), ready: make(chan struct{}), live: map[string]events.NodeRecord{}}
	invalid := cfg.Invalid
	n.w = watch.New(kv, watch.Handler{Apply: func(e watch.Entry) { n.apply(e, invalid) }, Synced: n.synced}, cfg.watchConfig(""))
	return n
}

// Run follows the bucket until ctx ends.
func (n *Nodes) Run(ctx context.Context) error { return n.w.Run(ctx) }

// Ready is closed once the bucket's contents as of the start are loaded.
func (n *Nodes) Ready() <-chan struct{} { return n.ready }

// Subscribe calls fn with every change from now on, in order, on the
// follower's goroutine (as Follower.Subscribe).
func (n *Nodes) Subscribe(fn func(NodeChange)) (cancel func()) { return n.subs.add(fn) }

// Live returns the live nodes' records by id.
func (n *Nodes) Live() map[string]events.NodeRecord {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return maps.Clone(n.live)
}

// IsLive reports whether node is live, without copying the set (the
// announce fast path asks it for every re-announce).
func (n *Nodes) IsLive(node string) bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	_, ok := n.live[node]
	return ok
}

// IDs are the live nodes' ids, sorted.
func (n *Nodes) IDs() []string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return slices.Sorted(maps.Keys(n.live))
}

// Len is the number of live nodes.
func (n *Nodes) Len() int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return len(n.live)
}

func (n *Nodes) synced() {
	if !n.loaded {
		n.loaded = true
		close(n.ready)
	}
}

func (n *Nodes) apply(e watch.Entry, invalid func()) {
	rec, live := liveNode(e.Key, e.Value, e.Deleted)
	if !live && !e.Deleted && events.IsID(e.Key) {
		invalid()
		n.log.Warn("ignoring an invalid hail_nodes entry; it counts as no node", "key", e.Key, "revision", e.Rev)
	}
	n.mu.Lock()
	prev, was := n.live[e.Key]
	if live {
		n.live[e.Key] = rec
	} else {
		delete(n.live, e.Key)
	}
	n.mu.Unlock()
	if !live && !was {
		return // never a node, or gone already (a delete replayed)
	}
	n.subs.tell(NodeChange{ID: e.Key, Live: live, Record: rec, Joined: live && (!was || !prev.StartedAt.Equal(rec.StartedAt))})
}

// liveNode is hail's one rule for a live node: a put under a UUID key
// holding a valid NodeRecord of that id. Anything else (an entry someone
// forged, garbage) counts as no node: it cannot take instances away from
// the real ones.
func liveNode(key string, value []byte, deleted bool) (events.NodeRecord, bool) {
	if deleted || !events.IsID(key) {
		return events.NodeRecord{}, false
	}
	rec, err := events.DecodeNodeRecord(value)
	if err != nil || rec.ID != key {
		return events.NodeRecord{}, false
	}
	return rec, true
}
