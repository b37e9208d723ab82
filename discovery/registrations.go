package discovery

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/heartbeat"
	"github.com/hailsd/hail/registry"
)

// This file is what a node does on announces, deregisters, changes to the
// registry and to the live nodes; all of it runs on the node's loop.

// handleAnnounces takes a burst of announces in queue order. Those of new
// instances are registered together: their KV creates go out at once. An
// announce of a known instance, or of an id met before in the burst, is
// applied after them, one at a time, as it always was.
func (n *Node) handleAnnounces(ctx context.Context, batch []job) {
	type announced struct {
		m   *nats.Msg
		a   events.Announce
		rec events.InstanceRecord
	}
	var fresh, rest []announced
	ids := make(map[string]bool, len(batch))
	for _, j := range batch {
		if n.stale(j.announce, j.queued) {
			continue
		}
		a, reason, err := n.control.announce(j.announce)
		if err != nil {
			n.reply.reject(j.announce, reason, err)
			continue
		}
		key := events.InstanceKey(a.Service, a.ID)
		_, _, known := n.reg.GetRev(key)
		if known || n.owned.get(key) != nil || ids[a.ID] {
			rest = append(rest, announced{m: j.announce, a: a})
			continue
		}
		if n.refuseTaken(j.announce, a) {
			continue
		}
		ids[a.ID] = true
		fresh = append(fresh, announced{m: j.announce, a: a, rec: n.newRecord(a)})
	}
	if len(fresh) > 0 {
		recs := make([]events.InstanceRecord, len(fresh))
		for i, f := range fresh {
			recs[i] = f.rec
		}
		for i, c := range n.store.createAll(ctx, recs) {
			n.registered(ctx, fresh[i].m, fresh[i].a, recs[i], c)
		}
	}
	for _, r := range rest {
		n.announce(ctx, r.m, r.a)
	}
}

// refuseTaken answers a 400 for an id registered under another service.
func (n *Node) refuseTaken(m *nats.Msg, a events.Announce) bool {
	other, taken := n.reg.OtherService(a.ID, a.Service)
	if taken {
		n.reply.reject(m, reasonIDTaken, fmt.Errorf("announce: id %s is registered under service %q; an id names one instance of one service", a.ID, other))
	}
	return taken
}

// announce applies one announce: a registration, or an update of a known
// instance.
func (n *Node) announce(ctx context.Context, m *nats.Msg, a events.Announce) {
	if n.refuseTaken(m, a) {
		return
	}
	key := events.InstanceKey(a.Service, a.ID)
	if _, _, known := n.reg.GetRev(key); !known && n.owned.get(key) == nil {
		rec := n.newRecord(a)
		n.registered(ctx, m, a, rec, n.store.create(ctx, rec))
		return
	}
	n.ackReannounce(ctx, m, key, a)
}

// newRecord is the record a new instance is registered with: passing
// (its announce is a sign of life) unless it says what its first check
// round found (an agent's), with its owner in the node field.
func (n *Node) newRecord(a events.Announce) events.InstanceRecord {
	now := time.Now().UTC()
	status := a.Status
	if status == "" {
		status = events.Passing
	}
	return events.InstanceRecord{Announce: a, Status: status, Node: n.members.owner(a.ID), RegisteredAt: now, UpdatedAt: now}
}

// registered takes in the outcome of rec's create and answers m. If the key
// existed already (another node wrote it and the watch has not delivered
// it yet), the stored record is taken in instead (adopted if this node owns
// it) and updated with the announce.
func (n *Node) registered(ctx context.Context, m *nats.Msg, a events.Announce, rec events.InstanceRecord, c created) {
	switch {
	case c.err != nil:
		n.reply.fail(m, c.err)
		return
	case c.exists:
		n.reg.Put(c.cur, c.rev)
		if n.members.owns(c.cur.ID) {
			n.owned.adopt(c.cur, c.rev, n.id)
		}
		n.claim(ctx)
		n.ackReannounce(ctx, m, rec.Key(), a)
		return
	}
	n.reg.Put(rec, c.rev)
	if rec.Node == n.id {
		n.owned.track(rec, c.rev)
	}
	n.m.announces("registered").Inc()
	n.publishHealth(rec, "", "registered")
	n.log.Info("instance registered", "service", a.Service, "instance_id", a.ID, "version", a.Version, "weight", a.Weight)
	n.reply.ack(m, a.ID)
}

// ackReannounce applies an announce to a known instance and answers m.
func (n *Node) ackReannounce(ctx context.Context, m *nats.Msg, key string, a events.Announce) {
	if err := n.reannounce(ctx, key, a); err != nil {
		n.reply.fail(m, err)
		return
	}
	n.reply.ack(m, a.ID)
}

// reannounce applies an announce to an existing record. The owner writes
// itself as owner too; another node leaves the owner field alone. Both
// writes are revision-checked.
func (n *Node) reannounce(ctx context.Context, key string, a events.Announce) error {
	t := n.owned.get(key)
	rec, rev, _ := n.reg.GetRev(key)
	if t != nil {
		rec, rev = t.rec, t.rev
	}
	if sameAnnounce(rec.Announce, a) {
		n.m.announces("unchanged").Inc()
		return nil
	}
	// The recorded status stays: a re-announce's status is ignored.
	mutate := func(r *events.InstanceRecord) { r.Announce = a }
	if t != nil {
		if err := n.update(ctx, t, mutate); err != nil {
			return err
		}
	} else {
		w := n.store.write(ctx, rec, rev, mutate)
		if w.err != nil {
			return w.err
		}
		n.reg.Put(w.rec, w.rev)
	}
	n.m.announces("updated").Inc()
	n.log.Info("instance updated", "service", a.Service, "instance_id", a.ID, "version", a.Version, "weight", a.Weight, "owner", rec.Node)
	return nil
}

// sameAnnounce reports whether an announce would change nothing in a
// record: its status (which only seeds a registration), its timestamp and
// its checks' output and since do not count.
func sameAnnounce(a, b events.Announce) bool {
	return a.Version == b.Version && a.Weight == b.Weight && a.AZ == b.AZ && a.Hostname == b.Hostname &&
		slices.Equal(a.Endpoints, b.Endpoints) && maps.Equal(a.Metadata, b.Metadata) &&
		a.Address == b.Address && a.Port == b.Port && slices.Equal(a.Tags, b.Tags) && events.SameChecks(a.Checks, b.Checks) &&
		events.SameConn(a.Conn, b.Conn)
}

func (n *Node) handleDeregister(ctx context.Context, m *nats.Msg) {
	d, reason, err := n.control.deregister(m)
	if err != nil {
		n.reply.reject(m, reason, err)
		return
	}
	why := d.Reason
	if why == "" {
		why = "deregistered"
	}
	rec, rev, known := n.reg.GetRev(events.InstanceKey(d.Service, d.ID))
	if !known {
		// Unknown: nothing to remove, and deregistering is idempotent.
		n.reply.ack(m, d.ID)
		return
	}
	// Whoever owns it, leaving needs no owner's say.
	if err := n.remove(ctx, rec, rev, why); err != nil {
		n.reply.fail(m, err)
		return
	}
	n.reply.ack(m, d.ID)
}

// remove deletes rec (last seen at rev), stops tracking it if this node
// owns it, and publishes its deregistered event.
func (n *Node) remove(ctx context.Context, rec events.InstanceRecord, rev uint64, reason string) error {
	key := rec.Key()
	if err := n.store.delete(ctx, key); err != nil {
		return err
	}
	n.reg.Delete(key, rev)
	if t := n.owned.get(key); t != nil {
		n.owned.untrack(t)
	}
	prev := rec.Status
	rec.Status = events.Deregistered
	n.m.transitions(events.Deregistered).Inc()
	n.publishHealth(rec, prev, reason)
	n.log.Info("instance deregistered", "service", rec.Service, "instance_id", rec.ID, "reason", reason)
	return nil
}

// update writes t's record changed by mutate, with this node as owner,
// checked against the revision the node last saw, and records the outcome.
func (n *Node) update(ctx context.Context, t *tracked, mutate func(*events.InstanceRecord)) error {
	return n.apply(t, n.store.write(ctx, t.rec, t.rev, func(r *events.InstanceRecord) { mutate(r); n.setOwner(r) }))
}

// updateAll writes every tracked record's change at once (recordStore's
// writeAll) and records the outcomes in order.
func (n *Node) updateAll(ctx context.Context, ts []*tracked, mutate func(i int) func(*events.InstanceRecord)) []error {
	jobs := make([]writeJob, len(ts))
	for i, t := range ts {
		jobs[i] = writeJob{rec: t.rec, rev: t.rev, mutate: mutate(i)}
	}
	outs := n.store.writeAll(ctx, jobs)
	errs := make([]error, len(ts))
	for i, t := range ts {
		errs[i] = n.apply(t, outs[i])
	}
	return errs
}

// apply records a write's outcome in the node's state.
func (n *Node) apply(t *tracked, w written) error {
	if w.gone {
		n.owned.untrack(t)
	}
	if w.err != nil {
		return w.err
	}
	n.owned.setRecord(t, w.rec, w.rev)
	n.reg.Put(w.rec, w.rev)
	return nil
}

// setOwner is the mutation of a claim: the node writes itself as owner.
func (n *Node) setOwner(r *events.InstanceRecord) { r.Node = n.id }

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
func (n *Node) claim(ctx context.Context) {
	// A batch waits its turn, so by then some of it may have gone to
	// another node, or been claimed by a transition written meanwhile.
	ts := slices.DeleteFunc(n.owned.takeUnclaimed(claimBatch), func(t *tracked) bool {
		return !n.owned.holds(t) || t.rec.Node == n.id
	})
	errs := n.updateAll(ctx, ts, func(int) func(*events.InstanceRecord) { return n.setOwner })
	for i, err := range errs {
		if err != nil {
			n.log.Warn("claim adopted record", "key", ts[i].rec.Key(), "err", err)
		}
	}
	if len(n.owned.unclaimed) > 0 && !n.claimLater {
		n.claimLater = true
		time.AfterFunc(claimPause, func() {
			n.submit(ctx, func(ctx context.Context) {
				n.claimLater = false
				n.claim(ctx)
			})
		})
	}
}

// applyChange takes in a change to hail_instances from the registry: the
// echo of the node's own write (ignored by revision), or a change made by
// someone else (another node, an operator's `nats kv put`).
func (n *Node) applyChange(ctx context.Context, c registry.Change) {
	t := n.owned.get(c.Key)
	if c.Deleted {
		if t != nil && t.rev < c.Rev {
			n.owned.untrack(t)
		}
		return
	}
	if t != nil {
		if t.rev >= c.Rev {
			return
		}
		n.owned.setRecord(t, c.Record, c.Rev)
		if c.Record.Status != t.judge.Status {
			t.judge = heartbeat.State{Status: c.Record.Status}
		}
		return
	}
	if !n.members.owns(c.ID) {
		return
	}
	// The registry may hold a newer report than the change by now.
	rec, rev, ok := n.reg.GetRev(c.Key)
	if !ok {
		return
	}
	n.owned.adopt(rec, rev, n.id)
	n.claim(ctx)
}

// changeMembers follows a change of the live nodes: the node takes over
// the records it now owns (keeping their status, so a healthy instance
// does not flap) and lets go of those another node now owns (that node
// claims them).
func (n *Node) changeMembers(ctx context.Context, joined, left []string) {
	if len(joined) == 0 && len(left) == 0 {
		return
	}
	for _, id := range left {
		n.log.Info("discovery node left", "peer", id)
	}
	for _, id := range joined {
		n.log.Info("discovery node joined", "peer", id)
	}
	n.m.members.Store(int64(n.members.len()))
	var gained, lost int
	for _, t := range n.owned.all() {
		if !n.members.owns(t.rec.ID) {
			n.owned.untrack(t)
			lost++
		}
	}
	n.reg.Each(func(rec events.InstanceRecord, rev uint64) {
		if n.owned.get(rec.Key()) == nil && n.members.owns(rec.ID) {
			n.owned.adopt(rec, rev, n.id)
			gained++
		}
	})
	if gained > 0 || lost > 0 {
		n.log.Info("ownership rebalanced", "nodes", n.members.len(), "gained", gained, "released", lost, "owned", n.owned.len())
		n.m.rebalances.Inc()
	}
	n.publishTargets()
	if gained > 0 && n.tracker != nil {
		// Instances taken over have gone a while without a heartbeat.
		n.tracker.Kick()
	}
	n.claim(ctx)
}
