package router

import (
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/httpmap"
)

// Error is a routing failure: the request reached no instance that
// answered. Code is PROTOCOL.md's: 404 unknown service or endpoint, 503 no
// healthy instance, 504 timed out.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return strconv.Itoa(e.Code) + " " + e.Message }

// call holds the decisions of one routed request, shared by the router's
// callback-driven Forwarder and the Client's blocking requests: which
// instance next, how long to wait, whether to try again, what to answer.
type call struct {
	table    *Table
	log      *slog.Logger
	service  string
	endpoint string
	in       *nats.Msg
	key      string
	view     *View
	ep       *Endpoint
	stats    *endpointStats
	start    time.Time
	deadline time.Time
	attempts int
	tried    []*Target

	// The attempt in progress.
	target *Target
	sent   time.Time

	// Set by the forwarder.
	fwd   *forwarder
	done  func(*nats.Msg, error)
	timer *time.Timer
	token uint64 // the waiting attempt's, under the forwarder's lock
}

// newCall looks the service and endpoint up. On error the call is still
// returned, for end.
func newCall(t *Table, log *slog.Logger, service, endpoint string, in *nats.Msg, deadline time.Time) (*call, *Error) {
	c := &call{table: t, log: log, service: service, endpoint: endpoint, in: in, start: time.Now()}
	v := t.View(service)
	if v == nil {
		c.stats = t.m.endpoint(unknownLabel, unknownLabel)
		return c, &Error{events.CodeNotFound, fmt.Sprintf("no service %q is registered", service)}
	}
	ep := v.Endpoint(endpoint)
	if ep == nil {
		c.stats = t.m.endpoint(service, unknownLabel)
		return c, &Error{events.CodeNotFound, fmt.Sprintf("service %q has no endpoint %q", service, endpoint)}
	}
	c.view, c.ep, c.stats = v, ep, ep.stats
	c.deadline = c.start.Add(v.Route.Timeout)
	if !deadline.IsZero() && deadline.Before(c.deadline) {
		c.deadline = deadline
	}
	if in.Header != nil {
		c.key = httpmap.Get(in.Header, v.Route.HashHeader) // names match without case (PROTOCOL v1.1)
	}
	v.state.budget.deposit()
	return c, nil
}

func (c *call) avoid(t *Target) bool {
	for _, x := range c.tried {
		if x.ID == t.ID {
			return true
		}
	}
	return false
}

// next picks the target of the next attempt and says how long to wait
// for it.
func (c *call) next() (*Target, time.Duration, *Error) {
	if c.attempts > 0 {
		// Membership may have changed since the last attempt.
		if v := c.table.View(c.service); v != nil {
			if ep := v.Endpoint(c.endpoint); ep != nil {
				c.view, c.ep = v, ep
			}
		}
	}
	now := time.Now()
	remaining := c.deadline.Sub(now)
	if remaining <= 0 {
		return nil, 0, &Error{events.CodeTimeout,
			fmt.Sprintf("%s.%s: no reply within %s after %d attempts", c.service, c.endpoint, c.view.Route.Timeout, c.attempts)}
	}
	var t *Target
	err := ErrNoInstance
	if c.ep.Picker != nil {
		t, err = c.ep.Picker.Pick(c.key, c.avoid)
	}
	if err != nil {
		msg := fmt.Sprintf("no healthy instance of %s serves %q", c.service, c.endpoint)
		if c.ep.Picker == nil && c.ep.Drained > 0 {
			msg = fmt.Sprintf("every instance of %s that serves %q is drained (%d at weight 0): none takes new traffic", c.service, c.endpoint, c.ep.Drained)
		}
		if c.attempts > 0 {
			msg += fmt.Sprintf(" (%d tried, none answered)", c.attempts)
		}
		return nil, 0, &Error{events.CodeUnavailable, msg}
	}
	c.attempts++
	c.target = t
	c.sent = now
	timeout := remaining
	if c.view.Route.RetryOnTimeout {
		// Share what is left among the attempts still allowed, so a
		// timed-out attempt leaves time for another.
		if left := c.view.Route.Retries + 2 - c.attempts; left > 1 {
			timeout = remaining / time.Duration(left)
		}
	}
	return t, timeout, nil
}

// subject is where the attempt goes.
func (c *call) subject() string {
	return c.table.cfg.Subjects.InstOf(c.service, c.target.ID, c.endpoint, c.target.Scoped)
}

// answered ends the attempt with the instance's reply m and returns it
// ready to relay, with Hail-Instance set.
func (c *call) answered(m *nats.Msg, now time.Time) *nats.Msg {
	code, _, isErr := events.ReplyError(m)
	c.target.Done(Result{Latency: now.Sub(c.sent), Failed: isErr && code >= 500, At: now})
	if m.Header == nil {
		m.Header = nats.Header{}
	}
	if m.Header.Get(events.HeaderInstance) == "" {
		m.Header.Set(events.HeaderInstance, c.target.ID)
	}
	return m
}

// missed is why an attempt got no answer.
type missed int

const (
	// noResponders: the request reached no one; another attempt is
	// always safe.
	noResponders missed = iota
	// timedOut: the instance took the request and did not answer in time.
	timedOut
	// connClosed: the instance's connection closed with the request in it
	// (its owner's critical event, reason disconnected; PROTOCOL v1.4). The
	// instance may have acted on it before it died, so this is a timeout
	// known early: retried only where a timeout would be.
	connClosed
	// notSent: picked from a view that still held an instance whose
	// connection had closed, and caught before it was sent; another
	// attempt is safe.
	notSent
)

// unanswered ends an attempt the instance did not answer. The instance is
// ejected (unless the table took it out already), and retry says whether
// to try another; if not, err is the answer.
func (c *call) unanswered(why missed, now time.Time) (retry bool, err *Error) {
	t, st := c.target, c.stats
	t.Done(Result{Latency: now.Sub(c.sent), Failed: true, At: now})
	// The table took out an instance whose connection closed already.
	if (why == noResponders || why == timedOut) && c.view.state.eject(t) {
		st.ejected.Inc()
		reason := "no responders"
		if why == timedOut {
			reason = "timeout"
		}
		c.log.Info("instance ejected", "service", c.service, "instance_id", t.ID, "reason", reason)
	}
	c.tried = append(c.tried, t)
	route := c.view.Route
	// After no responders another attempt is always safe; after a
	// timeout only if the route says the endpoint is idempotent.
	if (why == noResponders || why == notSent || route.RetryOnTimeout) && c.attempts <= route.Retries && now.Before(c.deadline) {
		if c.view.state.budget.withdraw() {
			st.retries.Inc()
			return true, nil
		}
		st.budget.Inc()
	}
	switch why {
	case timedOut:
		return false, &Error{events.CodeTimeout,
			fmt.Sprintf("%s.%s: instance %s did not answer within %s", c.service, c.endpoint, t.ID, now.Sub(c.sent).Round(time.Millisecond))}
	case connClosed:
		note := fmt.Sprintf("%d attempts", c.attempts)
		if !route.RetryOnTimeout {
			note = "not retried: the route has no retry_on_timeout"
		}
		return false, &Error{events.CodeTimeout,
			fmt.Sprintf("%s.%s: instance %s's connection closed with the request in it, %s after it was sent (%s)",
				c.service, c.endpoint, t.ID, now.Sub(c.sent).Round(time.Millisecond), note)}
	}
	last := "no responders"
	if why == notSent {
		last = "its connection closed"
	}
	return false, &Error{events.CodeUnavailable,
		fmt.Sprintf("%s.%s: no instance answered after %d attempts (last: %s, %s)", c.service, c.endpoint, c.attempts, t.ID, last)}
}

// end counts the call's outcome and frees its slot (a call without an answer).
func (c *call) end(outcome string) {
	c.count(outcome)
	c.release()
}

// release frees the call's forwarder slot; it comes after the answer went
// out, so a drain that waits for the slots waits for the answers too.
func (c *call) release() {
	if c.fwd != nil {
		c.fwd.release()
	}
}

// count records the call's outcome and duration.
func (c *call) count(outcome string) {
	c.stats.outcome[outcome].Inc()
	took := time.Since(c.start)
	c.stats.duration.Update(took.Seconds())
	switch outcome {
	case outcomeNoReply, outcomeCanceled:
		// Nobody waited for an answer, or stopped waiting.
	default:
		c.stats.traffic.add(took, outcome != outcomeOK)
	}
}

// outcomeOf is the outcome label of a routing error (nil: the instance
// answered).
func outcomeOf(err *Error) string {
	if err == nil {
		return outcomeOK
	}
	switch err.Code {
	case events.CodeNotFound:
		return outcomeNotFound
	case events.CodeTimeout:
		return outcomeTimeout
	case events.CodeBadRequest:
		return outcomeBadRequest
	}
	return outcomeUnavailable
}
