package discovery

import (
	"cmp"
	"errors"
	"fmt"
	"time"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/heartbeat"
)

// instanceState is what a round's decision needs of one owned instance.
type instanceState struct {
	Judge heartbeat.State
	// CriticalSince is when it was first critical and silent in the
	// current run of missed heartbeats; zero once it answers. Only
	// silence removes an instance: one that answers while a check fails
	// stays registered, critical, for as long as it answers (v1.1).
	CriticalSince time.Time
	// SilentSince is when its current run of unanswered heartbeats began
	// (the start of the round of the first); zero once it answers.
	// Self-preservation holds the judgement of a silence for
	// SelfPreservation.MaxDuration at most.
	SilentSince time.Time
	// RegisteredAt is its record's registered_at: an instance that fell
	// silent within SelfPreservation.SteadyAfter of it was never steady.
	RegisteredAt time.Time
	// Checks are the checks its record holds.
	Checks []events.CheckResult
	// Server is the NATS server its record's conn names ("" without
	// one); SilentOn the one it named when its current silence began.
	// A silence that began on a server as it went away is held for
	// serverLossGrace (serverloss.go), whatever the instance re-announces
	// meanwhile.
	Server, SilentOn string
	// Answered: it has answered a heartbeat since this node tracks it.
	// Only such instances count for self-preservation, so instances that
	// never answer (registered by someone who wants the node to stop
	// judging) cannot make it preserve; they go critical and expire.
	Answered bool
}

// silentSince is when st's instance fell silent, as of a round that
// started at start and gave it r: zero if it answered. A late answer to
// the round before is a sign of life, so its silence starts with this
// round.
func silentSince(st instanceState, r heartbeat.Result, start time.Time) time.Time {
	switch {
	case r.Err == nil:
		return time.Time{}
	case r.Late != "" || st.SilentSince.IsZero():
		return start
	}
	return st.SilentSince
}

// silentOn is the server st's instance fell silent on, as of a round
// that gave it r and found it silent since silent: its server when the
// silence began.
func silentOn(st instanceState, silent time.Time) string {
	if silent.IsZero() {
		return ""
	}
	if silent.Equal(st.SilentSince) && st.SilentOn != "" {
		return st.SilentOn
	}
	return st.Server
}

// held reports whether self-preservation may hold the judgement of an
// instance silent since silent, in a round that started at start: a
// silence lasts MaxDuration at most, so self-preservation cannot keep a
// dead instance passing for longer, however it is kept on.
func (sp SelfPreservation) held(silent, start time.Time) bool {
	return start.Sub(silent) < sp.MaxDuration
}

// steady reports whether an instance registered at registered and silent
// since silent counts toward self-preservation: one that fell silent
// within SteadyAfter of its registration never showed it stays up, and
// instances registered to fall silent together are just that.
func (sp SelfPreservation) steady(registered, silent time.Time) bool {
	return silent.Sub(registered) >= sp.SteadyAfter
}

// roundInput is everything a heartbeat round is judged on.
type roundInput struct {
	Results []heartbeat.Result
	Owned   map[string]instanceState // by id, as before the round
	Timing  Timing
	Start   time.Time // when the round's heartbeats went out
	// Lost are the servers that went away lately, by id (serverloss.go).
	Lost map[string]lossWindow
}

// transition is a change to record: a status change (announced by a
// health event), a change of the checks' statuses, or both.
type transition struct {
	ID   string
	Next instanceState
	// StatusChanged says whether Next.Judge.Status differs from the
	// recorded status; Why says why.
	StatusChanged bool
	Why           string
	// ChecksChanged: Next.Checks, from the heartbeat reply, go into the
	// record.
	ChecksChanged bool
}

// removal is an instance critical for long enough to be deregistered.
type removal struct {
	ID     string
	Reason string
}

// roundDecision is what a node does after one round.
type roundDecision struct {
	// Preserve, when not empty, is why the round judges only the
	// instances silent for longer than self-preservation holds
	// (self-preservation): this node seems cut off, not its instances.
	Preserve string
	// Outlasted counts the steady instances not critical that were
	// failing for longer than self-preservation holds: judged, this round
	// or not preserved.
	Outlasted int
	// Judged are the new states of instances whose record stays as it is
	// (in a preserved round: the held ones, with when they fell silent).
	Judged map[string]instanceState
	// Transitions change a status; Removals follow the transitions.
	Transitions []transition
	Removals    []removal
	// What the round counted, for metrics.
	Sent, Missed, BadReplies, Void int
	// Overloaded counts results void because the node read its answers
	// too slowly (heartbeat.ErrOverloaded).
	Overloaded int
	// ServerHeld counts the silent instances not judged because their
	// server went away as they fell silent.
	ServerHeld int
	// RTTs of the instances that answered, by id, even in a round not
	// judged: what answered is worth showing.
	RTTs map[string]time.Duration
}

// decideRound judges one heartbeat round: a pure function of the owned
// instances' states, the results, the timing and the round's start, like
// heartbeat.Judge for one instance. Results for instances no longer owned
// are ignored, and so are void ones (this node was cut off, not the
// instance: judging the silence would flap every instance it owns).
//
// Self-preservation (Eureka's idea) comes first: when more than the set
// share of the owned instances that are not critical are failing, and at
// least the set minimum, or every result is void, the round is the node's
// fault and the failing are not judged. Counting every failing instance
// not yet critical, not only those that fell silent this round, catches an
// outage that spreads over the rounds it takes to go critical. It holds a
// silence for MaxDuration at most: an instance silent for longer is judged
// in every round and counts toward nothing, so self-preservation ends on
// its own unless the instances answer again, and an instance that dies
// while it lasts is judged MaxDuration after it fell silent, however the
// others come and go. An instance that fell silent within SteadyAfter of
// its registration counts toward nothing either (it is still held while
// others make the node preserve).
//
// An instance whose silence began on a server as it went away (in.Lost)
// is held apart from all that, for serverLossGrace from the start of its
// silence, and counts toward nothing: its clients are reconnecting.
func decideRound(in roundInput) roundDecision {
	// Sized for every result: most instances are judged and answer, and
	// growing two maps of thousands each round was 4% of a node's
	// CPU at 25,000 instances.
	d := roundDecision{Judged: make(map[string]instanceState, len(in.Results)), RTTs: make(map[string]time.Duration, len(in.Results))}
	sp := in.Timing.SelfPreservation
	var live, failing, owned int
	for _, r := range in.Results {
		st, ok := in.Owned[r.ID]
		if !ok {
			continue
		}
		owned++
		if r.Void() {
			d.Void++
			if errors.Is(r.Err, heartbeat.ErrOverloaded) {
				d.Overloaded++
			}
			continue
		}
		if st.Judge.Status == events.Critical || !st.Answered {
			continue
		}
		if r.Err == nil {
			live++
			continue
		}
		silent := silentSince(st, r, in.Start)
		if serverHeld(in.Lost, silentOn(st, silent), silent, in.Start) {
			// Its silence is its server's going away, not this node's
			// nor its own: it counts toward nothing.
			continue
		}
		if !sp.steady(st.RegisteredAt, silent) {
			continue
		}
		if !sp.held(silent, in.Start) {
			d.Outlasted++
			continue
		}
		live++
		failing++
	}
	switch {
	case d.Void > 0 && d.Void == owned && d.Overloaded == d.Void:
		d.Preserve = "too slow to read its heartbeat answers"
	case d.Void > 0 && d.Void == owned:
		d.Preserve = "lost its NATS connection"
	case failing >= sp.MinFailures && float64(failing) > sp.Share*float64(live):
		d.Preserve = fmt.Sprintf("%d of %d live instances failing at once", failing, live)
	}
	for _, r := range in.Results {
		st, ok := in.Owned[r.ID]
		if !ok || r.Void() {
			continue
		}
		if r.Err == nil {
			d.RTTs[r.ID] = r.RTT
		}
		silent := silentSince(st, r, in.Start)
		on := silentOn(st, silent)
		serverLost := r.Err != nil && serverHeld(in.Lost, on, silent, in.Start)
		if serverLost {
			d.ServerHeld++
		}
		if serverLost || d.Preserve != "" && (silent.IsZero() || sp.held(silent, in.Start)) {
			// Held: not judged, but when and where it fell silent is
			// kept, so that the hold ends in time.
			if !silent.Equal(st.SilentSince) || on != st.SilentOn {
				st.SilentSince, st.SilentOn = silent, on
				d.Judged[r.ID] = st
			}
			continue
		}
		d.Sent++
		if r.Err != nil {
			d.Missed++
			if errors.Is(r.Err, heartbeat.ErrBadReply) {
				d.BadReplies++
			}
		}
		// A late answer to the round before, judged before this result:
		// the instance was alive, only the node or the bus was slow, so
		// its run of misses starts again.
		prior, lateWhy := st.Judge, ""
		if r.Err != nil && r.Late != "" {
			prior, lateWhy = heartbeat.Judge(prior, heartbeat.Verdict{Answered: true, Reported: r.Late}, in.Timing.Heartbeat.Thresholds())
		}
		judged, why := heartbeat.Judge(prior, r.Verdict(), in.Timing.Heartbeat.Thresholds())
		why = cmp.Or(why, lateWhy)
		next := instanceState{Judge: judged, SilentSince: silent, SilentOn: on, Server: st.Server, RegisteredAt: st.RegisteredAt, Checks: st.Checks, Answered: st.Answered || r.Err == nil || r.Late != ""}
		if r.Err == nil {
			next.CriticalSince = time.Time{}
		} else if judged.Status == events.Critical {
			next.CriticalSince = st.CriticalSince
			if next.CriticalSince.IsZero() {
				next.CriticalSince = in.Start
			}
		}
		checksChanged := r.Err == nil && !events.SameChecks(st.Checks, r.Reply.Checks)
		if checksChanged {
			next.Checks = r.Reply.Checks
		}
		statusChanged := judged.Status != st.Judge.Status
		if !statusChanged && !checksChanged {
			d.Judged[r.ID] = next
			if r.Err != nil && judged.Status == events.Critical && !st.CriticalSince.IsZero() && in.Start.Sub(st.CriticalSince) >= in.Timing.DeregisterAfter {
				d.Removals = append(d.Removals, removal{ID: r.ID, Reason: fmt.Sprintf("critical for %v", in.Timing.DeregisterAfter)})
			}
			continue
		}
		if statusChanged && r.Err != nil {
			why = fmt.Sprintf("%s (last: %v)", why, r.Err)
		}
		if !statusChanged {
			why = "checks changed"
		}
		d.Transitions = append(d.Transitions, transition{ID: r.ID, Next: next, StatusChanged: statusChanged, Why: why, ChecksChanged: checksChanged})
	}
	return d
}
