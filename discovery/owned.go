package discovery

import (
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/heartbeat"
)

// tracked is what a node knows of one instance it owns.
type tracked struct {
	rec   events.InstanceRecord
	rev   uint64 // KV revision rec was read or written at
	judge heartbeat.State
	// criticalSince is when it was first critical and silent in its
	// current run of missed heartbeats (see instanceState).
	criticalSince time.Time
	// silentSince is when its current run of unanswered heartbeats began
	// (see instanceState).
	silentSince time.Time
	// silentOn is the server its record named when that run began (see
	// instanceState).
	silentOn string
	// answered: it answered a heartbeat since this node tracks it (see
	// instanceState).
	answered bool
	// target is what its heartbeats are sent to (events.HeartbeatTarget),
	// made once: publish lists every owned instance's.
	target string
}

// ownedSet is the instances a node owns and heartbeats. It is used by the
// node's loop alone, except targets, which the tracker reads.
type ownedSet struct {
	byKey map[string]*tracked
	byID  map[string]*tracked
	// byConn is the owned instances by the connection their record names
	// (PROTOCOL v1.4): one disconnect advisory marks all of them.
	byConn    map[events.Conn]map[*tracked]struct{}
	unclaimed []*tracked // adopted, not yet rewritten with this node as owner
	dirty     bool       // targets are behind
	targets   atomic.Pointer[[]string]
}

func newOwnedSet() *ownedSet {
	o := &ownedSet{byKey: map[string]*tracked{}, byID: map[string]*tracked{}, byConn: map[events.Conn]map[*tracked]struct{}{}}
	o.targets.Store(&[]string{})
	return o
}

// track starts tracking rec, read or written at rev.
func (o *ownedSet) track(rec events.InstanceRecord, rev uint64) *tracked {
	t := &tracked{rec: rec, rev: rev, judge: heartbeat.State{Status: rec.Status}, target: events.HeartbeatTarget(rec.Service, rec.ID, rec.Scoped)}
	if rec.Status == events.Critical {
		// The time it went critical is not stored; its last update is
		// the best the record tells.
		t.criticalSince = rec.UpdatedAt
	}
	o.byKey[rec.Key()] = t
	o.byID[rec.ID] = t
	o.indexConn(t)
	o.dirty = true
	return t
}

// adopt tracks a record found in KV; one that names another owner is to be
// claimed (takeUnclaimed).
func (o *ownedSet) adopt(rec events.InstanceRecord, rev uint64, self string) *tracked {
	t := o.track(rec, rev)
	// Taken over from another node (or from before a restart): it was
	// judged before, so it counts as one that answers.
	t.answered = rec.Status != events.Critical
	if rec.Node != self {
		o.unclaimed = append(o.unclaimed, t)
	}
	return t
}

func (o *ownedSet) untrack(t *tracked) {
	delete(o.byKey, t.rec.Key())
	if o.byID[t.rec.ID] == t {
		delete(o.byID, t.rec.ID)
	}
	o.unindexConn(t)
	o.dirty = true
}

func (o *ownedSet) indexConn(t *tracked) {
	if t.rec.Conn == nil {
		return
	}
	on := o.byConn[*t.rec.Conn]
	if on == nil {
		on = map[*tracked]struct{}{}
		o.byConn[*t.rec.Conn] = on
	}
	on[t] = struct{}{}
}

func (o *ownedSet) unindexConn(t *tracked) {
	if t.rec.Conn == nil {
		return
	}
	on := o.byConn[*t.rec.Conn]
	delete(on, t)
	if len(on) == 0 {
		delete(o.byConn, *t.rec.Conn)
	}
}

// onConn returns the owned instances whose record names conn.
func (o *ownedSet) onConn(conn events.Conn) []*tracked {
	return slices.Collect(maps.Keys(o.byConn[conn]))
}

// get returns the instance tracked under key, or nil.
func (o *ownedSet) get(key string) *tracked { return o.byKey[key] }

// id returns the instance tracked with id, or nil.
func (o *ownedSet) id(id string) *tracked { return o.byID[id] }

// holds reports whether t is still the one tracked under its key.
func (o *ownedSet) holds(t *tracked) bool { return o.byKey[t.rec.Key()] == t }

func (o *ownedSet) all() []*tracked { return slices.Collect(maps.Values(o.byKey)) }

func (o *ownedSet) len() int { return len(o.byKey) }

// takeUnclaimed returns the adopted instances not claimed yet, and
// forgets them.
func (o *ownedSet) takeUnclaimed(most int) []*tracked {
	k := min(most, len(o.unclaimed))
	ts := o.unclaimed[:k:k]
	o.unclaimed = o.unclaimed[k:]
	if len(o.unclaimed) == 0 {
		o.unclaimed = nil
	}
	return ts
}

// setRecord replaces t's record; a change of subjects (scoped) changes the
// tracker's targets.
func (o *ownedSet) setRecord(t *tracked, rec events.InstanceRecord, rev uint64) {
	if rec.Scoped != t.rec.Scoped {
		o.dirty = true
		t.target = events.HeartbeatTarget(rec.Service, rec.ID, rec.Scoped)
	}
	if !events.SameConn(rec.Conn, t.rec.Conn) {
		o.unindexConn(t)
		defer o.indexConn(t)
	}
	t.rec, t.rev = rec, rev
}

// takeChange takes in a record someone else wrote for t; a status set
// from outside (an operator's put) starts its judgement over from it.
func (o *ownedSet) takeChange(t *tracked, rec events.InstanceRecord, rev uint64) {
	o.setRecord(t, rec, rev)
	if rec.Status != t.judge.Status {
		t.judge = heartbeat.State{Status: rec.Status}
	}
}

// states are what a round's decision needs of the owned instances among
// results, by id. liveOn is the server an identity's live connections are
// on, "" when discovery holds none (connects.go): for an identity it
// heard connect, that, not its record's conn, is where it is (PROTOCOL
// v1.6). A nil liveOn holds no identity.
func (o *ownedSet) states(results []heartbeat.Result, liveOn func(key string) string) map[string]instanceState {
	owned := make(map[string]instanceState, len(o.byKey))
	for _, r := range results {
		if t := o.byID[r.ID]; t != nil {
			st := instanceState{Judge: t.judge, CriticalSince: t.criticalSince, SilentSince: t.silentSince, SilentOn: t.silentOn, RegisteredAt: t.rec.RegisteredAt, Checks: t.rec.Checks, Answered: t.answered}
			if t.rec.Conn != nil {
				st.Server = t.rec.Conn.Server
			}
			if liveOn != nil {
				if s := liveOn(t.rec.Key()); s != "" {
					st.Server = s
				}
			}
			owned[r.ID] = st
		}
	}
	return owned
}

// judged takes in a round's judgement of t.
func (o *ownedSet) judged(t *tracked, st instanceState) {
	t.judge, t.criticalSince, t.silentSince, t.silentOn, t.answered = st.Judge, st.CriticalSince, st.SilentSince, st.SilentOn, st.Answered
}

// setJudge replaces t's judge state alone: a transition that could not be
// written keeps the stored status, so the next round tries it again.
func (o *ownedSet) setJudge(t *tracked, j heartbeat.State) { t.judge = j }

// disconnected judges t critical from now, as if its heartbeats had
// failed (PROTOCOL v1.4): an answered one makes it passing again by the
// judge's usual rule, and its silence from now on removes it after
// deregister_after.
func (o *ownedSet) disconnected(t *tracked, now time.Time) {
	t.judge, t.criticalSince = heartbeat.State{Status: events.Critical}, now
}

// publish makes the tracked ids the tracker's targets, if they changed.
// One snapshot per batch of changes, not per instance: a registration
// burst tracks thousands at once.
func (o *ownedSet) publish() bool {
	if !o.dirty {
		return false
	}
	o.dirty = false
	targets := make([]string, 0, len(o.byID))
	for _, t := range o.byID {
		targets = append(targets, t.target)
	}
	o.targets.Store(&targets)
	return true
}

// ids is the tracker's view of what to heartbeat: each instance's
// events.HeartbeatTarget.
func (o *ownedSet) ids() []string { return *o.targets.Load() }
