package swarm

import (
	"time"

	"github.com/hailsd/hail/member"
)

// The decisions of a client written from PROTOCOL v1 alone, which the swarm
// runs in its V1 mode to load a region as hail's own SDK never would: it
// announces at once, again when a hail.discover asks (at once: v1 knows no
// spread_ms), and again after UnheardIntervals without a heartbeat,
// counted from its last announce or heartbeat, whatever discovery answered
// (no backoff; a 503's retry_after_ms is not read). Pure functions of
// (state, event, time), as package member's, tested by a table beside
// theirs.

// v1State is what such a client remembers between events.
type v1State struct {
	// Next is when it announces again unless a heartbeat comes first.
	Next time.Time
	// Asked: a hail.discover asked it to announce, now.
	Asked bool
	// Sent: it has announced once, so an announce due now that nobody
	// asked for is for want of a heartbeat.
	Sent bool
}

// v1Begin is a new client's state: announce at once.
func v1Begin(now time.Time) v1State { return v1State{Next: now} }

// v1Due says whether the client announces now.
func v1Due(s v1State, now time.Time) bool { return s.Asked || !now.Before(s.Next) }

// v1Unheard says whether the announce due now is for want of a heartbeat
// (not the first, not asked for by a discover).
func v1Unheard(s v1State, now time.Time) bool {
	return s.Sent && !s.Asked && !now.Before(s.Next)
}

// v1Announced is the state after an announce sent at now, whatever its
// answer: the next falls due UnheardIntervals later unless a heartbeat
// comes.
func v1Announced(s v1State, now time.Time, interval time.Duration) v1State {
	return v1State{Next: now.Add(member.UnheardIntervals * interval), Sent: true}
}

// v1Beat is the state after a heartbeat heard at at: the next announce
// moves to UnheardIntervals after it (an older heartbeat changes nothing).
func v1Beat(s v1State, at time.Time, interval time.Duration) v1State {
	if next := at.Add(member.UnheardIntervals * interval); next.After(s.Next) {
		s.Next = next
	}
	return s
}

// v1Discovered is the state after a hail.discover: announce now, whatever
// spread the message asks for.
func v1Discovered(s v1State) v1State {
	s.Asked = true
	return s
}
