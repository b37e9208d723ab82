package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
)

// Error is a routing failure: the request reached no instance that
// answered. Code is PROTOCOL.md's: 404 unknown service or endpoint, 503 no
// healthy instance, 504 timed out.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return strconv.Itoa(e.Code) + " " + e.Message }

// ForwarderConfig configures a Forwarder.
type ForwarderConfig struct {
	Subjects events.Subjects
	// MaxInflight bounds the calls in progress; Forward blocks beyond it
	// (back-pressure on the caller's subscription). Default 4096.
	MaxInflight int
	Logger      *slog.Logger
}

// Forwarder sends requests to instances picked from a Table and retries
// when an instance turns out to be gone. It runs no goroutine per request:
// replies, no-responders notices and timeouts arrive as callbacks on one
// wildcard inbox, keyed by a token in the reply subject.
type Forwarder struct {
	nc      *nats.Conn
	table   *Table
	cfg     ForwarderConfig
	log     *slog.Logger
	inbox   string // prefix; a call's reply subject is inbox + token
	sub     *nats.Subscription
	sem     chan struct{}
	calls   sync.WaitGroup
	token   atomic.Uint64
	unknown *endpointStats

	mu      sync.Mutex
	pending map[uint64]*call
}

// NewForwarder subscribes the forwarder's reply inbox on nc.
func NewForwarder(nc *nats.Conn, table *Table, cfg ForwarderConfig) (*Forwarder, error) {
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = 4096
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Forwarder{
		nc: nc, table: table, cfg: cfg, log: cfg.Logger.With("component", "forwarder"),
		inbox: nc.NewRespInbox() + ".", sem: make(chan struct{}, cfg.MaxInflight),
		pending: map[uint64]*call{}, unknown: table.m.endpoint(unknownLabel, unknownLabel),
	}
	sub, err := nc.Subscribe(f.inbox+"*", f.onReply)
	if err != nil {
		return nil, fmt.Errorf("subscribe reply inbox: %w", err)
	}
	// Replies must never be dropped as a slow consumer while calls wait.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("reply inbox limits: %w", err)
	}
	f.sub = sub
	return f, nil
}

// Close waits for the calls in progress (until ctx ends) and unsubscribes
// the inbox. Safe to call twice.
func (f *Forwarder) Close(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		f.calls.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("wait for calls in progress: %w", ctx.Err())
	}
	if uerr := f.sub.Unsubscribe(); uerr != nil && !errors.Is(uerr, nats.ErrBadSubscription) && !errors.Is(uerr, nats.ErrConnectionClosed) {
		err = errors.Join(err, fmt.Errorf("unsubscribe reply inbox: %w", uerr))
	}
	return err
}

// call is one routed request, from Forward to its one done.
type call struct {
	f        *Forwarder
	service  string
	endpoint string
	in       *nats.Msg
	done     func(*nats.Msg, error)
	key      string
	view     *View
	ep       *Endpoint
	start    time.Time
	deadline time.Time
	attempts int
	tried    []*Target

	// The attempt in progress.
	target *Target
	sent   time.Time
	timer  *time.Timer
}

// Forward routes in (its data and headers) to one instance of service
// that serves endpoint, and calls done exactly once: with the instance's
// reply, or with an *Error. The call ends by the route's timeout, or by
// deadline if that is earlier and not zero. done runs on a NATS callback
// goroutine and must not block. A nil done sends in one way: to one
// instance, without retry, as a publish.
func (f *Forwarder) Forward(service, endpoint string, in *nats.Msg, deadline time.Time, done func(*nats.Msg, error)) {
	f.sem <- struct{}{}
	f.calls.Add(1)
	c := &call{f: f, service: service, endpoint: endpoint, in: in, done: done, start: time.Now()}
	v := f.table.View(service)
	if v == nil {
		c.fail(f.unknown, outcomeNotFound, &Error{events.CodeNotFound, fmt.Sprintf("no service %q is registered", service)})
		return
	}
	ep := v.Endpoint(endpoint)
	if ep == nil {
		c.fail(f.table.m.endpoint(service, unknownLabel), outcomeNotFound,
			&Error{events.CodeNotFound, fmt.Sprintf("service %q has no endpoint %q", service, endpoint)})
		return
	}
	c.view, c.ep = v, ep
	c.deadline = c.start.Add(v.Route.Timeout)
	if !deadline.IsZero() && deadline.Before(c.deadline) {
		c.deadline = deadline
	}
	if in.Header != nil {
		c.key = in.Header.Get(v.Route.HashHeader)
	}
	v.state.budget.deposit()
	if done == nil {
		c.oneWay()
		return
	}
	c.attempt()
}

// oneWay sends a request nobody waits for: no retry is possible.
func (c *call) oneWay() {
	if c.ep.Picker == nil {
		c.fail(c.ep.stats, outcomeUnavailable, nil)
		return
	}
	t, err := c.ep.Picker.Pick(c.key, nil)
	if err != nil {
		c.fail(c.ep.stats, outcomeUnavailable, nil)
		return
	}
	m := &nats.Msg{Subject: c.f.cfg.Subjects.Inst(t.ID, c.endpoint), Header: c.in.Header, Data: c.in.Data}
	err = c.f.nc.PublishMsg(m)
	t.Done(Result{Failed: err != nil})
	c.finish(c.ep.stats, outcomeNoReply)
}

func (c *call) avoid(t *Target) bool {
	for _, x := range c.tried {
		if x.ID == t.ID {
			return true
		}
	}
	return false
}

func (c *call) attempt() {
	if c.attempts > 0 {
		// Membership may have changed since the last attempt.
		if v := c.f.table.View(c.service); v != nil {
			if ep := v.Endpoint(c.endpoint); ep != nil {
				c.view, c.ep = v, ep
			}
		}
	}
	remaining := time.Until(c.deadline)
	if remaining <= 0 {
		c.fail(c.ep.stats, outcomeTimeout, &Error{events.CodeTimeout,
			fmt.Sprintf("%s.%s: no reply within %s after %d attempts", c.service, c.endpoint, c.view.Route.Timeout, c.attempts)})
		return
	}
	var t *Target
	err := ErrNoInstance
	if c.ep.Picker != nil {
		t, err = c.ep.Picker.Pick(c.key, c.avoid)
	}
	if err != nil {
		msg := fmt.Sprintf("no healthy instance of %s serves %q", c.service, c.endpoint)
		if c.attempts > 0 {
			msg += fmt.Sprintf(" (%d tried, none answered)", c.attempts)
		}
		c.fail(c.ep.stats, outcomeUnavailable, &Error{events.CodeUnavailable, msg})
		return
	}
	c.attempts++
	c.target = t
	timeout := remaining
	if c.view.Route.RetryOnTimeout {
		// Share what is left among the attempts still allowed, so a
		// timed-out attempt leaves time for another.
		if left := c.view.Route.Retries + 2 - c.attempts; left > 1 {
			timeout = remaining / time.Duration(left)
		}
	}
	f := c.f
	token := f.token.Add(1)
	c.sent = time.Now()
	f.mu.Lock()
	f.pending[token] = c
	// Made under the lock so that the reply handler, which takes the
	// call out under the same lock, always finds the timer set.
	c.timer = time.AfterFunc(timeout, func() { f.expire(token) })
	f.mu.Unlock()
	m := &nats.Msg{
		Subject: f.cfg.Subjects.Inst(t.ID, c.endpoint),
		Reply:   f.inbox + strconv.FormatUint(token, 36),
		Header:  c.in.Header,
		Data:    c.in.Data,
	}
	if err := f.nc.PublishMsg(m); err != nil {
		if f.take(token) == nil {
			return // the timer got there first
		}
		c.timer.Stop()
		t.Done(Result{})
		c.fail(c.ep.stats, outcomeUnavailable, &Error{events.CodeUnavailable, fmt.Sprintf("router cannot send: %v", err)})
	}
}

// take removes and returns the pending call of token, or nil if another
// path (reply or timer) already took it.
func (f *Forwarder) take(token uint64) *call {
	f.mu.Lock()
	c := f.pending[token]
	delete(f.pending, token)
	f.mu.Unlock()
	return c
}

// NATS tells a requester that nobody subscribes to the subject with an
// empty message whose Status header is 503.
const (
	statusHeader = "Status"
	noResponders = "503"
)

func (f *Forwarder) onReply(m *nats.Msg) {
	i := strings.LastIndexByte(m.Subject, '.')
	token, err := strconv.ParseUint(m.Subject[i+1:], 36, 64)
	if err != nil {
		return
	}
	c := f.take(token)
	if c == nil {
		return // after its timeout, or a duplicate
	}
	c.timer.Stop()
	now := time.Now()
	latency := now.Sub(c.sent)
	if len(m.Data) == 0 && m.Header.Get(statusHeader) == noResponders {
		c.target.Done(Result{Latency: latency, Failed: true, At: now})
		c.retry(false)
		return
	}
	code, _, isErr := events.ReplyError(m)
	c.target.Done(Result{Latency: latency, Failed: isErr && code >= 500, At: now})
	out := &nats.Msg{Header: m.Header, Data: m.Data}
	if out.Header == nil {
		out.Header = nats.Header{}
	}
	if out.Header.Get(events.HeaderInstance) == "" {
		out.Header.Set(events.HeaderInstance, c.target.ID)
	}
	c.done(out, nil)
	c.finish(c.ep.stats, outcomeOK)
}

func (f *Forwarder) expire(token uint64) {
	c := f.take(token)
	if c == nil {
		return
	}
	now := time.Now()
	c.target.Done(Result{Latency: now.Sub(c.sent), Failed: true, At: now})
	c.retry(true)
}

// retry follows an attempt the instance did not answer: the instance is
// ejected, and another is tried when that is safe and allowed.
func (c *call) retry(timedOut bool) {
	t, st := c.target, c.ep.stats
	if c.view.state.eject(t) {
		st.ejected.Inc()
		c.f.log.Info("instance ejected", "service", c.service, "instance_id", t.ID,
			"reason", map[bool]string{false: "no responders", true: "timeout"}[timedOut])
	}
	c.tried = append(c.tried, t)
	route := c.view.Route
	// After no responders the request reached no one, so another attempt
	// is always safe; after a timeout only if the endpoint is idempotent.
	safe := !timedOut || route.RetryOnTimeout
	if safe && c.attempts <= route.Retries && time.Now().Before(c.deadline) {
		if c.view.state.budget.withdraw() {
			st.retries.Inc()
			c.attempt()
			return
		}
		st.budget.Inc()
	}
	if timedOut {
		c.fail(st, outcomeTimeout, &Error{events.CodeTimeout,
			fmt.Sprintf("%s.%s: instance %s did not answer within %s", c.service, c.endpoint, t.ID, time.Since(c.sent).Round(time.Millisecond))})
		return
	}
	c.fail(st, outcomeUnavailable, &Error{events.CodeUnavailable,
		fmt.Sprintf("%s.%s: no instance answered after %d attempts (last: %s, no responders)", c.service, c.endpoint, c.attempts, t.ID)})
}

func (c *call) fail(st *endpointStats, outcome string, err *Error) {
	if err != nil && c.done != nil {
		c.done(nil, err)
	}
	c.finish(st, outcome)
}

func (c *call) finish(st *endpointStats, outcome string) {
	st.outcome[outcome].Inc()
	st.duration.UpdateDuration(c.start)
	<-c.f.sem
	c.f.calls.Done()
}
