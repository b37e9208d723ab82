package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/heartbeat"
)

// handleRound judges one heartbeat round (decideRound) and carries the
// decision out: all transitions of the round written at once, their events
// published, then the removals. In self-preservation only the instances
// silent for longer than it holds are judged.
func (n *Node) handleRound(ctx context.Context, start time.Time, results []heartbeat.Result) {
	owned := make(map[string]instanceState, n.owned.len())
	for _, r := range results {
		if t := n.owned.id(r.ID); t != nil {
			owned[r.ID] = instanceState{Judge: t.judge, CriticalSince: t.criticalSince, SilentSince: t.silentSince, RegisteredAt: t.rec.RegisteredAt, Checks: t.rec.Checks, Answered: t.answered}
		}
	}
	timing := n.Timing()
	d := decideRound(roundInput{Results: results, Owned: owned, Timing: timing, Start: start})
	if n.log.Enabled(ctx, slog.LevelDebug) {
		n.log.Debug("heartbeat round", "instances", len(results), "answered", len(d.RTTs), "took", time.Since(start).Round(time.Microsecond))
	}
	defer n.m.roundTook.UpdateDuration(start)
	n.rtts.Store(&d.RTTs)
	n.m.void.Add(d.Void)
	if d.Overloaded > 0 {
		// Answers came in time and waited unread: the node is short of
		// CPU (or its connection of bandwidth), and those instances are
		// not judged this round rather than judged wrong.
		n.m.overloaded.Inc()
		n.log.Warn("heartbeat round overran: answers waited unread at its timeout; the unanswered are not judged this round",
			"instances", len(results), "unjudged", d.Overloaded, "took", time.Since(start).Round(time.Millisecond))
	}
	n.selfPreservation(d.Preserve, d.Outlasted, timing.SelfPreservation.MaxDuration)
	n.m.heartbeats.Add(d.Sent)
	n.m.missed.Add(d.Missed)
	n.m.rejected(reasonBadReply).Add(d.BadReplies)
	if d.Preserve == "" {
		for _, rtt := range d.RTTs {
			n.m.rtt.Update(rtt.Seconds())
		}
	}
	for id, st := range d.Judged {
		t := n.owned.id(id)
		t.judge, t.criticalSince, t.silentSince, t.answered = st.Judge, st.CriticalSince, st.SilentSince, st.Answered
	}

	ts := make([]*tracked, len(d.Transitions))
	prevs := make([]events.Status, len(d.Transitions)) // the stored status each event reports as previous
	for i, c := range d.Transitions {
		ts[i] = n.owned.id(c.ID)
		prevs[i] = ts[i].rec.Status
	}
	errs := n.updateAll(ctx, ts, func(i int) func(*events.InstanceRecord) {
		c := d.Transitions[i]
		return func(r *events.InstanceRecord) {
			r.Status = c.Next.Judge.Status
			if c.ChecksChanged {
				r.Checks = c.Next.Checks
			}
			n.setOwner(r)
		}
	})
	for i, c := range d.Transitions {
		t, prev := ts[i], prevs[i]
		status := c.Next.Judge.Status
		if errs[i] != nil {
			// The judge keeps the old status, so the next round tries
			// the transition again.
			n.log.Error("record transition", "service", t.rec.Service, "instance_id", t.rec.ID, "status", status, "err", errs[i])
			c.Next.Judge.Status = t.judge.Status
			t.judge = c.Next.Judge
			continue
		}
		t.judge, t.criticalSince, t.silentSince, t.answered = c.Next.Judge, c.Next.CriticalSince, c.Next.SilentSince, c.Next.Answered
		if !c.StatusChanged {
			n.log.Debug("instance checks changed", "service", t.rec.Service, "instance_id", t.rec.ID, "status", status)
			continue
		}
		n.m.transitions(status).Inc()
		n.publishHealth(t.rec, prev, c.Why)
		n.log.Info("instance health changed", "service", t.rec.Service, "instance_id", t.rec.ID, "status", status, "previous", prev, "reason", c.Why)
	}

	for _, r := range d.Removals {
		t := n.owned.id(r.ID)
		if t == nil {
			continue // gone during the writes
		}
		if err := n.remove(ctx, t.rec, t.rev, r.Reason); err != nil {
			n.log.Error("remove critical instance", "service", t.rec.Service, "instance_id", t.rec.ID, "err", err)
		}
	}
}

// selfPreservation enters or leaves self-preservation as a round's
// decision says (reason empty: judged normally), saying so on each change:
// it ends when the instances answer again, or when those it held were
// silent for longer than it holds (outlasted of them, held for most).
func (n *Node) selfPreservation(reason string, outlasted int, most time.Duration) {
	if reason != "" {
		n.m.preserved.Inc()
		if !n.preserving {
			n.preserving = true
			n.m.preserving.Store(true)
			n.log.Warn("self-preservation: judging only instances silent for longer than it holds while this node seems cut off", "reason", reason, "max_duration", most)
			n.publishNode(events.NodeSelfPreservation, reason)
		}
		return
	}
	if n.preserving {
		n.preserving = false
		n.m.preserving.Store(false)
		why := "instances answer again"
		if outlasted > 0 {
			why = fmt.Sprintf("%d instances silent for longer than self-preservation holds (%v): judged", outlasted, most)
		}
		n.log.Info("self-preservation over", "reason", why)
		n.publishNode(events.NodeNormal, why)
	}
}

// publishNode publishes a node event: on entering and leaving
// self-preservation.
func (n *Node) publishNode(state, reason string) {
	data, err := json.Marshal(events.NodeEvent{Node: n.id, State: state, Reason: events.CutOutput(reason, MaxReason), TS: time.Now().UTC()})
	if err == nil {
		err = n.nc.Publish(n.cfg.Subjects.NodeEvent(n.id), data)
	}
	if err != nil {
		n.log.Warn("publish node event", "state", state, "err", err)
	}
}

func (n *Node) publishHealth(rec events.InstanceRecord, prev events.Status, reason string) {
	ev := events.HealthEvent{
		ID: rec.ID, Service: rec.Service, Status: rec.Status, Previous: prev,
		Reason: events.CutOutput(reason, MaxReason), Node: n.id, TS: time.Now().UTC(),
	}
	data, err := json.Marshal(ev)
	if err == nil {
		err = n.nc.Publish(n.cfg.Subjects.Health(rec.Service, rec.ID), data)
	}
	if err != nil {
		n.log.Warn("publish health event", "service", rec.Service, "instance_id", rec.ID, "err", err)
	}
}
