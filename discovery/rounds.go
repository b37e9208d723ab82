package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/heartbeat"
)

// beatPace is the most heartbeats a second a node's round sends
// (heartbeat.Tracker.Pace): 3,400 instances (a third of 10,000) go out
// over 170 ms instead of at once, 5,000 and more over a quarter second
// (half the default timeout); rounds of up to 512 are not paced. 20,000
// missed fewer of 25,000 v1 instances' heartbeats than 50,000 in three
// alternating runs of each (README, "Paced rounds").
const beatPace = 20_000

// rounds takes the heartbeat tracker's rounds: each is judged by the pure
// decideRound on the owned instances' states, and its outcome carried
// out: the judgements taken into the owned set, the transitions and
// removals written through records, their events published. It holds
// whether the node is in self-preservation and the last round's RTTs. It
// runs on the node's loop; RTTs may be read from anywhere.
type rounds struct {
	owned   *ownedSet
	records *records
	timing  *liveTiming
	pub     publisher
	m       *nodeMetrics
	log     *slog.Logger
	// losses are the servers that went away (serverloss.go).
	losses *serverLosses
	// live is the identities' live connections (connects.go): the
	// server an identity is on.
	live *liveConns
	// preserving: the node is in self-preservation.
	preserving bool
	// rtts is the last answered heartbeat's RTT of each owned instance,
	// replaced after every round.
	rtts atomic.Pointer[map[string]time.Duration]
}

// RTTs are the round-trip times of the instances that answered the last
// round, by id.
func (r *rounds) RTTs() map[string]time.Duration {
	if m := r.rtts.Load(); m != nil {
		return *m
	}
	return nil
}

// handle judges one heartbeat round (decideRound) and carries the
// decision out: all transitions of the round written at once, then the
// removals, then their events published. In self-preservation only the
// instances silent for longer than it holds are judged.
func (r *rounds) handle(ctx context.Context, start time.Time, results []heartbeat.Result) {
	timing := r.timing.load()
	lost := r.losses.snapshot(start, timing.Heartbeat.Interval+timing.Heartbeat.Timeout)
	r.live.sweep(start, timing.DeregisterAfter, r.records.known)
	var owned map[string]instanceState
	r.live.servers(func(on func(string) string) { owned = r.owned.states(results, on) })
	d := decideRound(roundInput{Results: results, Owned: owned, Timing: timing, Start: start, Lost: lost})
	if r.log.Enabled(ctx, slog.LevelDebug) {
		r.log.Debug("heartbeat round", "instances", len(results), "answered", len(d.RTTs), "took", time.Since(start).Round(time.Microsecond))
	}
	defer r.m.roundTook.UpdateDuration(start)
	r.rtts.Store(&d.RTTs)
	r.m.void.Add(d.Void)
	r.losses.held.Add(d.ServerHeld)
	if d.Overloaded > 0 {
		// Answers came in time and waited unread: the node is short of
		// CPU (or its connection of bandwidth), and those instances are
		// not judged this round rather than judged wrong.
		r.m.overloaded.Inc()
		r.log.Warn("heartbeat round overran: answers waited unread at its timeout; the unanswered are not judged this round",
			"instances", len(results), "unjudged", d.Overloaded, "took", time.Since(start).Round(time.Millisecond))
	}
	r.selfPreservation(d.Preserve, d.Outlasted, timing.SelfPreservation.MaxDuration)
	r.m.heartbeats.Add(d.Sent)
	r.m.missed.Add(d.Missed)
	r.m.rejected(reasonBadReply).Add(d.BadReplies)
	if d.Preserve == "" {
		for _, rtt := range d.RTTs {
			r.m.rtt.Update(rtt.Seconds())
		}
	}
	for id, st := range d.Judged {
		r.owned.judged(r.owned.id(id), st)
	}

	ts := make([]*tracked, len(d.Transitions))
	prevs := make([]events.Status, len(d.Transitions)) // the stored status each event reports as previous
	for i, c := range d.Transitions {
		ts[i] = r.owned.id(c.ID)
		prevs[i] = ts[i].rec.Status
	}
	errs, removed := r.records.writeRound(ctx, ts, d.Transitions, d.Removals)
	for i, c := range d.Transitions {
		t, prev := ts[i], prevs[i]
		status := c.Next.Judge.Status
		if errs[i] != nil {
			// The judge keeps the old status, so the next round tries
			// the transition again.
			r.log.Error("record transition", "service", t.rec.Service, "instance_id", t.rec.ID, "status", status, "err", errs[i])
			c.Next.Judge.Status = t.judge.Status
			r.owned.setJudge(t, c.Next.Judge)
			continue
		}
		r.owned.judged(t, c.Next)
		if !c.StatusChanged {
			r.log.Debug("instance checks changed", "service", t.rec.Service, "instance_id", t.rec.ID, "status", status)
			continue
		}
		r.m.transitions(status).Inc()
		r.pub.health(t.rec, prev, c.Why)
		r.log.Info("instance health changed", "service", t.rec.Service, "instance_id", t.rec.ID, "status", status, "previous", prev, "reason", c.Why)
	}
	for _, rm := range removed {
		if rm.err != nil {
			r.log.Error("remove critical instance", "service", rm.rec.Service, "instance_id", rm.rec.ID, "err", rm.err)
			continue
		}
		r.pub.deregistered(rm.rec, rm.reason)
	}
}

// selfPreservation enters or leaves self-preservation as a round's
// decision says (reason empty: judged normally), saying so on each change:
// it ends when the instances answer again, or when those it held were
// silent for longer than it holds (outlasted of them, held for most).
func (r *rounds) selfPreservation(reason string, outlasted int, most time.Duration) {
	if reason != "" {
		r.m.preserved.Inc()
		if !r.preserving {
			r.preserving = true
			r.m.preserving.Store(true)
			r.log.Warn("self-preservation: judging only instances silent for longer than it holds while this node seems cut off", "reason", reason, "max_duration", most)
			r.pub.nodeEvent(events.NodeSelfPreservation, reason)
		}
		return
	}
	if r.preserving {
		r.preserving = false
		r.m.preserving.Store(false)
		why := "instances answer again"
		if outlasted > 0 {
			why = fmt.Sprintf("%d instances silent for longer than self-preservation holds (%v): judged", outlasted, most)
		}
		r.log.Info("self-preservation over", "reason", why)
		r.pub.nodeEvent(events.NodeNormal, why)
	}
}
