package member

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
)

// The member's decisions, as pure functions of (previous state, what
// happened, when): no clock, no NATS, no randomness but the jitter passed
// in. Member runs them for one instance; the swarm runs them for each of
// its many instances from one scheduler. Tests drive them with plain values
// (decide_test.go), like heartbeat.Judge.

// ReannounceCap bounds the wait between announces, a retry_after_ms
// included.
const ReannounceCap = time.Minute

// UnheardIntervals is how many heartbeat intervals without a heartbeat
// make a member announce again (PROTOCOL.md "Timing defaults").
const UnheardIntervals = 3

// minAnnounceTimeout is the floor of AnnounceTimeout.
const minAnnounceTimeout = 2 * time.Second

// AnnounceTimeout is how long a member waits for discovery's answer to an
// announce or a deregister: one heartbeat interval, at least 2 s. A node
// answers at once, with a 503 and retry_after_ms, an announce it cannot
// answer in its turn (discovery's admission control, which admits a
// fixed 1,024 waiting), so waiting that long mostly hears the node's own
// answer rather than guessing; the floor is for short intervals (tests,
// 100-200 ms), where a replicated KV write on a loaded machine may take
// longer than an interval, and an announce given up too early is only sent
// again, adding to the load that delayed it. The same value for the SDK,
// the agent and the swarm (it was one interval in the SDK, 5 s in the
// agent).
func AnnounceTimeout(interval time.Duration) time.Duration {
	return max(interval, minAnnounceTimeout)
}

// Spread is the window a hail.discover asks a member to announce within:
// the message's spread_ms, or without one half an interval, at most a
// second.
func Spread(data []byte, interval time.Duration) time.Duration {
	return events.DiscoverSpread(data, min(interval/2, time.Second))
}

// Kind is what discovery's answer to an announce means for the member.
type Kind int

const (
	// Taken: discovery recorded the announce.
	Taken Kind = iota
	// Busy: a 5xx (a node shedding a storm, or its KV down): try again,
	// after RetryAfter when the node said when, else backing off.
	Busy
	// Unanswered: no answer in time, no responders (no discovery yet), or
	// connection trouble: try again, backing off.
	Unanswered
	// Refused: a 4xx. Final: the same announce would be refused again, so
	// the member stops announcing and reports the error; only a change of
	// what it announces (Changed) sends it again. 408 and 429 mean "later"
	// and count as Busy.
	Refused
)

func (k Kind) String() string {
	switch k {
	case Taken:
		return "taken"
	case Busy:
		return "busy"
	case Unanswered:
		return "unanswered"
	case Refused:
		return "refused"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Outcome is one announce's result as the member reads it.
type Outcome struct {
	Kind Kind
	// Code is the error reply's code (0 when there was none).
	Code int
	// RetryAfter is a Busy reply's retry_after_ms, bounded by
	// ReannounceCap; 0 when absent.
	RetryAfter time.Duration
	// Err says what went wrong; nil when Taken.
	Err error
}

// ErrRefused wraps a final refusal of an announce.
var ErrRefused = errors.New("announce refused")

// Classify reads discovery's answer to an announce: reply and err are what
// the request returned.
func Classify(reply *nats.Msg, err error) Outcome {
	if err != nil {
		return Outcome{Kind: Unanswered, Err: err}
	}
	code, text, isErr := events.ReplyError(reply)
	if !isErr {
		return Outcome{Kind: Taken}
	}
	if code >= 400 && code < 500 && code != 408 && code != 429 {
		return Outcome{Kind: Refused, Code: code, Err: fmt.Errorf("%w: %d %s", ErrRefused, code, text)}
	}
	o := Outcome{Kind: Busy, Code: code, Err: fmt.Errorf("announce not taken now: %d %s", code, text)}
	var b events.ErrorBody // beyond the code: how long a busy node asks it to wait
	if json.Unmarshal(reply.Data, &b) == nil && b.RetryAfterMS > 0 {
		o.RetryAfter = min(time.Duration(b.RetryAfterMS)*time.Millisecond, ReannounceCap)
	}
	return o
}

// State is what a member remembers between events for its announces.
type State struct {
	// Next is when it announces again unless a heartbeat comes first:
	// UnheardIntervals after the last announce taken or heartbeat heard,
	// or a backoff after announces not taken.
	Next time.Time
	// Asked is when a hail.discover asked it to announce (zero: not
	// asked). A heartbeat does not cancel it: discovery asked.
	Asked time.Time
	// Heard is the last heartbeat taken into account.
	Heard time.Time
	// Failed counts announces in a row not taken, for the backoff.
	Failed int
	// Unsent: what it announces has not been taken since it last changed
	// (the first announce, a new weight). Heartbeats do not settle it: the
	// record discovery heartbeats may be the old one.
	Unsent bool
	// Refused: the last announce was refused (a 4xx); nothing more is sent
	// until what it announces changes.
	Refused bool
}

// Begin is a new member's state: announce at once.
func Begin(now time.Time) State {
	return State{Next: now, Unsent: true}
}

// Due says whether the member announces now.
func Due(s State, now time.Time) bool {
	if s.Refused {
		return false
	}
	return !now.Before(s.Next) || (!s.Asked.IsZero() && !now.Before(s.Asked))
}

// Wake is when Due next becomes true; zero when never (refused).
func Wake(s State) time.Time {
	if s.Refused {
		return time.Time{}
	}
	if !s.Asked.IsZero() && s.Asked.Before(s.Next) {
		return s.Asked
	}
	return s.Next
}

// Unheard says whether the announce due now is for want of a heartbeat
// (not asked for by a discover, not a change to send).
func Unheard(s State, now time.Time) bool {
	return Due(s, now) && !s.Unsent && (s.Asked.IsZero() || now.Before(s.Asked))
}

// Backoff is how long a member waits before announcing again after failed
// announces in a row not taken: UnheardIntervals at first (PROTOCOL.md),
// then exponential backoff with full jitter (AWS's "Exponential Backoff
// And Jitter"), capped at ReannounceCap, so that a region whose discovery
// is slow or down is not flooded by every instance at once. jitter(d)
// returns a duration in [0, d).
func Backoff(interval time.Duration, failed int, jitter func(time.Duration) time.Duration) time.Duration {
	base := UnheardIntervals * interval
	if failed <= 0 {
		return base
	}
	ceiling := min(ReannounceCap, base<<min(failed, 16))
	if ceiling <= base {
		return base
	}
	return base + jitter(ceiling-base)
}

// Announced is the state after an announce sent at now had outcome o.
// A busy node's retry_after_ms replaces the backoff: the member comes back
// after it, spread by up to half of it again (a herd told the same wait
// does not return at one instant).
func Announced(s State, o Outcome, now time.Time, interval time.Duration, jitter func(time.Duration) time.Duration) State {
	s.Asked = time.Time{}
	switch o.Kind {
	case Taken:
		s.Failed, s.Unsent, s.Refused = 0, false, false
		s.Next = now.Add(Backoff(interval, 0, jitter))
	case Refused:
		s.Failed, s.Unsent, s.Refused = 0, false, true
		s.Next = time.Time{}
	default:
		s.Failed++
		wait := Backoff(interval, s.Failed, jitter)
		if o.RetryAfter > 0 {
			wait = o.RetryAfter + jitter(o.RetryAfter/2+1)
		}
		s.Next = now.Add(wait)
	}
	return s
}

// Beat is the state after a heartbeat heard at at (the last one; an older
// or the same one changes nothing). It resets the backoff: discovery is
// there. Unless a change is still to be sent, the member next announces
// UnheardIntervals after it, if no heartbeat follows.
func Beat(s State, at time.Time, interval time.Duration) State {
	if !at.After(s.Heard) {
		return s
	}
	s.Heard, s.Failed = at, 0
	if !s.Unsent && !s.Refused {
		s.Next = at.Add(Backoff(interval, 0, nil))
	}
	return s
}

// Discovered is the state after a hail.discover heard at now asking for
// announces within spread: the member announces at a random point of it
// (an earlier pending ask stands). A refused member stays silent.
func Discovered(s State, now time.Time, spread time.Duration, jitter func(time.Duration) time.Duration) State {
	if s.Refused {
		return s
	}
	at := now.Add(jitter(spread + 1))
	if s.Asked.IsZero() || at.Before(s.Asked) {
		s.Asked = at
	}
	return s
}

// Changed is the state after what the member announces changed (its
// weight, say): announce at once, and until taken, whatever the
// heartbeats say; a refusal is forgotten, as the new announce may pass.
func Changed(s State, now time.Time) State {
	s.Unsent, s.Refused = true, false
	s.Next = now
	return s
}
