package discovery

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/registry"
)

// records is the node's hold on hail_instances: every record it writes
// goes through the store, then into the registry and, for an instance it
// owns, into the owned set; it takes over and lets go of instances as the
// registry and the live nodes change, and claims those it took over. It
// knows nothing of the node: it runs on the node's loop, and hands later
// work back through submit.
type records struct {
	self    string
	store   recordStore
	reg     *registry.Follower
	owned   *ownedSet
	members *members
	m       *nodeMetrics
	log     *slog.Logger
	// submit hands work to the node's loop: the next batch of claims.
	submit func(context.Context, func(context.Context))
	// kick asks the heartbeat tracker for a round now; nil until it runs.
	kick func()
	// claimLater: a batch of claims is due (claim).
	claimLater bool
}

// known reports whether key is registered, as far as the node knows.
func (r *records) known(key string) bool {
	_, _, known := r.reg.GetRev(key)
	return known || r.owned.get(key) != nil
}

// current is key's record as the node knows it: its own if it owns it.
func (r *records) current(key string) (events.InstanceRecord, uint64) {
	if t := r.owned.get(key); t != nil {
		return t.rec, t.rev
	}
	rec, rev, _ := r.reg.GetRev(key)
	return rec, rev
}

// owner is the node that owns instance id.
func (r *records) owner(id string) string { return r.members.owner(id) }

// created takes in the outcome of rec's create; exists reports that the
// key was there already (another node wrote it and the watch has not
// delivered it yet): the stored record is taken in instead, adopted if
// this node owns it.
func (r *records) created(ctx context.Context, rec events.InstanceRecord, c created) (exists bool) {
	if c.exists {
		r.reg.Put(c.cur, c.rev)
		if r.members.owns(c.cur.ID) {
			r.owned.adopt(c.cur, c.rev, r.self)
		}
		r.claim(ctx)
		return true
	}
	r.reg.Put(rec, c.rev)
	if rec.Node == r.self {
		r.owned.track(rec, c.rev)
	}
	return false
}

// change writes key's record (rec, last seen at rev) changed by mutate:
// the owner writes itself as owner too; another node leaves the owner
// field alone. Both writes are revision-checked.
func (r *records) change(ctx context.Context, key string, rec events.InstanceRecord, rev uint64, mutate func(*events.InstanceRecord)) error {
	if t := r.owned.get(key); t != nil {
		return r.update(ctx, t, mutate)
	}
	w := r.store.write(ctx, rec, rev, mutate)
	if w.err != nil {
		return w.err
	}
	r.reg.Put(w.rec, w.rev)
	return nil
}

// update writes t's record changed by mutate, with this node as owner,
// checked against the revision the node last saw, and records the outcome.
func (r *records) update(ctx context.Context, t *tracked, mutate func(*events.InstanceRecord)) error {
	return r.apply(t, r.store.write(ctx, t.rec, t.rev, func(rec *events.InstanceRecord) { mutate(rec); r.setOwner(rec) }))
}

// updateAll writes every tracked record's change at once (recordStore's
// writeAll) and records the outcomes in order.
func (r *records) updateAll(ctx context.Context, ts []*tracked, mutate func(i int) func(*events.InstanceRecord)) []error {
	jobs := make([]writeJob, len(ts))
	for i, t := range ts {
		jobs[i] = writeJob{rec: t.rec, rev: t.rev, mutate: mutate(i)}
	}
	outs := r.store.writeAll(ctx, jobs)
	errs := make([]error, len(ts))
	for i, t := range ts {
		errs[i] = r.apply(t, outs[i])
	}
	return errs
}

// apply records a write's outcome.
func (r *records) apply(t *tracked, w written) error {
	if w.gone {
		r.owned.untrack(t)
	}
	if w.err != nil {
		return w.err
	}
	r.owned.setRecord(t, w.rec, w.rev)
	r.reg.Put(w.rec, w.rev)
	return nil
}

// setOwner is the mutation of a claim: the node writes itself as owner.
func (r *records) setOwner(rec *events.InstanceRecord) { rec.Node = r.self }

// remove deletes rec (last seen at rev), and stops tracking it if this
// node owns it.
func (r *records) remove(ctx context.Context, rec events.InstanceRecord, rev uint64) error {
	key := rec.Key()
	if err := r.store.delete(ctx, key); err != nil {
		return err
	}
	r.reg.Delete(key, rev)
	if t := r.owned.get(key); t != nil {
		r.owned.untrack(t)
	}
	return nil
}

// removed is an instance a round removed (err nil) or failed to remove.
type removed struct {
	rec    events.InstanceRecord
	reason string
	err    error
}

// writeRound writes a round's outcome: every transition's record at once
// (with this node as owner), then the removals of the instances still
// tracked. It returns each transition's error, in order, and the removals
// tried.
func (r *records) writeRound(ctx context.Context, ts []*tracked, transitions []transition, removals []removal) ([]error, []removed) {
	errs := r.updateAll(ctx, ts, func(i int) func(*events.InstanceRecord) {
		c := transitions[i]
		return func(rec *events.InstanceRecord) {
			rec.Status = c.Next.Judge.Status
			if c.ChecksChanged {
				rec.Checks = c.Next.Checks
			}
			r.setOwner(rec)
		}
	})
	var out []removed
	for _, rm := range removals {
		t := r.owned.id(rm.ID)
		if t == nil {
			continue // gone during the writes
		}
		out = append(out, removed{rec: t.rec, reason: rm.Reason, err: r.remove(ctx, t.rec, t.rev)})
	}
	return errs, out
}

// publishTargets hands the tracker the owned ids, once per batch of
// changes.
func (r *records) publishTargets() {
	if r.owned.publish() {
		r.m.owned.Store(int64(r.owned.len()))
	}
}

// Claims are written claimBatch at a time, claimPause apart. A handover
// rewrites the owner of every record that changes hands (a third of the
// region when a node of three stops or starts), and written in one burst
// those KV writes and their watch deliveries starve the heartbeats: at
// 50,000 every instance went unheard for seconds. The owner field names
// who judges; until a claim lands, the new owner's transitions still
// write it, and only a router's shortcut for health events waits on it.
const (
	claimBatch = 256
	claimPause = 250 * time.Millisecond
)

// claim records this node as the owner of the records it adopted, the
// first claimBatch now and the rest in later batches.
func (r *records) claim(ctx context.Context) {
	// A batch waits its turn, so by then some of it may have gone to
	// another node, or been claimed by a transition written meanwhile.
	ts := slices.DeleteFunc(r.owned.takeUnclaimed(claimBatch), func(t *tracked) bool {
		return !r.owned.holds(t) || t.rec.Node == r.self
	})
	errs := r.updateAll(ctx, ts, func(int) func(*events.InstanceRecord) { return r.setOwner })
	if ctx.Err() != nil {
		// Stopping: the records keep the owner they name, which the
		// nodes that stay take over as before.
		return
	}
	// One line per batch, not per record: a KV that refuses a batch
	// refuses all of it.
	failed, first := 0, -1
	for i, err := range errs {
		if err != nil {
			failed++
			if first < 0 {
				first = i
			}
		}
	}
	if failed > 0 {
		r.log.Warn("claim adopted records", "failed", failed, "of", len(ts), "first_key", ts[first].rec.Key(), "err", errs[first])
	}
	if len(r.owned.unclaimed) > 0 && !r.claimLater {
		r.claimLater = true
		time.AfterFunc(claimPause, func() {
			r.submit(ctx, func(ctx context.Context) {
				r.claimLater = false
				r.claim(ctx)
			})
		})
	}
}

// adoptOwned tracks every record of the registry this node owns and does
// not track yet, and returns how many.
func (r *records) adoptOwned() (gained int) {
	r.reg.Each(func(rec events.InstanceRecord, rev uint64) {
		if r.owned.get(rec.Key()) == nil && r.members.owns(rec.ID) {
			r.owned.adopt(rec, rev, r.self)
			gained++
		}
	})
	return gained
}

// applyChange takes in a change to hail_instances from the registry: the
// echo of the node's own write (ignored by revision), or a change made by
// someone else (another node, an operator's `nats kv put`).
func (r *records) applyChange(ctx context.Context, c registry.Change) {
	t := r.owned.get(c.Key)
	if c.Deleted {
		if t != nil && t.rev < c.Rev {
			r.owned.untrack(t)
		}
		return
	}
	if t != nil {
		if t.rev >= c.Rev {
			return
		}
		r.owned.takeChange(t, c.Record, c.Rev)
		return
	}
	if !r.members.owns(c.ID) {
		return
	}
	// The registry may hold a newer report than the change by now.
	rec, rev, ok := r.reg.GetRev(c.Key)
	if !ok {
		return
	}
	r.owned.adopt(rec, rev, r.self)
	r.claim(ctx)
}

// changeMembers follows a change of the live nodes: the node takes over
// the records it now owns (keeping their status, so a healthy instance
// does not flap) and lets go of those another node now owns (that node
// claims them).
func (r *records) changeMembers(ctx context.Context, joined, left []string) {
	if len(joined) == 0 && len(left) == 0 {
		return
	}
	for _, id := range left {
		r.log.Info("discovery node left", "peer", id)
	}
	for _, id := range joined {
		r.log.Info("discovery node joined", "peer", id)
	}
	r.m.members.Store(int64(r.members.len()))
	var lost int
	for _, t := range r.owned.all() {
		if !r.members.owns(t.rec.ID) {
			r.owned.untrack(t)
			lost++
		}
	}
	gained := r.adoptOwned()
	if gained > 0 || lost > 0 {
		r.log.Info("ownership rebalanced", "nodes", r.members.len(), "gained", gained, "released", lost, "owned", r.owned.len())
		r.m.rebalances.Inc()
	}
	r.publishTargets()
	if gained > 0 && r.kick != nil {
		// Instances taken over have gone a while without a heartbeat.
		r.kick()
	}
	r.claim(ctx)
}
