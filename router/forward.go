package router

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
)

// forwarderConfig configures a Forwarder.
type forwarderConfig struct {
	// MaxInflight bounds the calls in progress; Forward blocks beyond it
	// (back-pressure on the caller's subscription). Default 4096.
	MaxInflight int
	Logger      *slog.Logger
}

// forwarder sends requests to instances picked from a Table and retries
// when an instance turns out to be gone. It runs no goroutine per request:
// replies, no-responders notices and timeouts arrive as callbacks on one
// wildcard inbox, keyed by a token in the reply subject.
//
// Tokens are random, not counted: an instance sees the reply subject of
// each request it serves, and with counted tokens it could answer the
// next callers' requests to other instances (or have discovery, a
// confused deputy, answer them with an error).
type forwarder struct {
	nc    *nats.Conn
	table *Table
	log   *slog.Logger
	inbox string // prefix; an attempt's reply subject is inbox + token
	sub   *nats.Subscription
	sem   chan struct{}
	calls sync.WaitGroup

	mu sync.Mutex
	// tokens draws the tokens, under mu: ChaCha8 is a cryptographically
	// strong generator and costs a few nanoseconds a draw.
	tokens  *rand.ChaCha8
	pending map[uint64]*call
	closed  closedConns // under mu but its epoch
}

// newForwarder subscribes the forwarder's reply inbox on nc.
func newForwarder(nc *nats.Conn, table *Table, cfg forwarderConfig) (*forwarder, error) {
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = 4096
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("seed reply tokens: %w", err)
	}
	f := &forwarder{
		nc: nc, table: table, log: cfg.Logger.With("component", "forwarder"),
		inbox: nc.NewRespInbox() + ".", sem: make(chan struct{}, cfg.MaxInflight), tokens: rand.NewChaCha8(seed), pending: map[uint64]*call{},
		closed: closedConns{at: map[instanceRef]uint64{}},
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
func (f *forwarder) Close(ctx context.Context) error {
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

func (f *forwarder) release() {
	<-f.sem
	f.calls.Done()
}

// Forward routes in (its data and headers) to one instance of service
// that serves endpoint, and calls done exactly once: with the instance's
// reply, or with an *Error. The call ends by the route's timeout, or by
// deadline if that is earlier and not zero. done runs on a NATS callback
// goroutine and must not block. A nil done sends in one way: to one
// instance, without retry, as a publish. cancel ends the call early, with
// done(nil, context.Canceled), if it is still waiting: its caller went
// away, and neither its slot nor a retry should outlive that.
func (f *forwarder) Forward(service, endpoint string, in *nats.Msg, deadline time.Time, done func(*nats.Msg, error)) (cancel func()) {
	f.sem <- struct{}{}
	f.calls.Add(1)
	c, err := newCall(f.table, f.log, service, endpoint, in, deadline)
	c.fwd, c.done = f, done
	switch {
	case err != nil:
		f.fail(c, err)
	case done == nil:
		f.oneWay(c)
	default:
		f.attempt(c)
		return func() { f.cancel(c) }
	}
	return func() {}
}

// cancel ends c if an attempt of it is waiting for an answer.
func (f *forwarder) cancel(c *call) {
	f.mu.Lock()
	if f.pending[c.token] != c {
		f.mu.Unlock()
		return // answered, timed out, or between attempts
	}
	delete(f.pending, c.token)
	f.mu.Unlock()
	c.timer.Stop()
	c.target.Done(Result{}) // the instance did nothing wrong
	c.count(outcomeCanceled)
	c.done(nil, context.Canceled)
	c.release()
}

// fail ends c with err. Here and on every end, the call is counted before
// its answer goes out (whoever reads the metrics after the answer sees it
// counted) and its slot freed after.
func (f *forwarder) fail(c *call, err *Error) {
	c.count(outcomeOf(err))
	if c.done != nil {
		c.done(nil, err)
	}
	c.release()
}

// oneWay sends a request nobody waits for: no retry is possible.
func (f *forwarder) oneWay(c *call) {
	t, _, err := c.next()
	if err != nil {
		f.fail(c, err)
		return
	}
	perr := f.nc.PublishMsg(&nats.Msg{Subject: c.subject(), Header: c.in.Header, Data: c.in.Data})
	t.Done(Result{Failed: perr != nil})
	c.end(outcomeNoReply)
}

func (f *forwarder) attempt(c *call) {
	epoch := f.closed.epoch.Load()
	t, timeout, rerr := c.next()
	if rerr != nil {
		f.fail(c, rerr)
		return
	}
	// Made before the call is pending: once it is, a closed connection
	// (closeAttempts) may take it and try again on another goroutine.
	m := &nats.Msg{Subject: c.subject(), Header: c.in.Header, Data: c.in.Data}
	f.mu.Lock()
	if f.closed.since(epoch, c.service, t.ID) {
		// Picked from a view older than its connection's closing.
		f.mu.Unlock()
		f.unanswered(c, notSent, time.Now())
		return
	}
	token := f.tokens.Uint64()
	for f.pending[token] != nil {
		token = f.tokens.Uint64()
	}
	f.pending[token] = c
	c.token = token
	// Made under the lock so that the reply handler, which takes the
	// call out under the same lock, always finds the timer set.
	c.timer = time.AfterFunc(timeout, func() { f.expire(token) })
	f.mu.Unlock()
	m.Reply = replySubject(f.inbox, token)
	if err := f.nc.PublishMsg(m); err != nil {
		if f.take(token) == nil {
			return // the timer got there first
		}
		c.timer.Stop()
		t.Done(Result{})
		f.fail(c, &Error{events.CodeUnavailable, fmt.Sprintf("router cannot send: %v", err)})
	}
}

// take removes and returns the pending call of token, or nil if another
// path (reply or timer) already took it.
func (f *forwarder) take(token uint64) *call {
	f.mu.Lock()
	c := f.pending[token]
	delete(f.pending, token)
	f.mu.Unlock()
	return c
}

// NATS tells a requester that nobody subscribes to the subject with an
// empty message whose Status header is 503.
const (
	statusHeader       = "Status"
	statusNoResponders = "503"
)

// replySubject is the reply subject of an attempt's token.
func replySubject(inbox string, token uint64) string {
	return inbox + strconv.FormatUint(token, 36)
}

// replyToken is the token a reply subject was made from by replySubject,
// or false. Only the one spelling of a token is taken ("A" and "a", "01"
// and "1" parse alike), so that one attempt cannot be answered under two
// subjects.
func replyToken(subject, inbox string) (uint64, bool) {
	rest, ok := strings.CutPrefix(subject, inbox)
	if !ok {
		return 0, false
	}
	// The spelling FormatUint makes: lower case, no leading zero. Checked
	// in place: every routed answer passes here.
	if rest == "" || (rest[0] == '0' && len(rest) > 1) {
		return 0, false
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
			return 0, false
		}
	}
	token, err := strconv.ParseUint(rest, 36, 64)
	return token, err == nil
}

func (f *forwarder) onReply(m *nats.Msg) {
	token, ok := replyToken(m.Subject, f.inbox)
	if !ok {
		return
	}
	c := f.take(token)
	if c == nil {
		return // after its timeout, or a duplicate
	}
	c.timer.Stop()
	now := time.Now()
	if len(m.Data) == 0 && m.Header.Get(statusHeader) == statusNoResponders {
		f.unanswered(c, noResponders, now)
		return
	}
	out := c.answered(m, now)
	c.count(outcomeOK)
	c.done(out, nil)
	c.release()
}

func (f *forwarder) expire(token uint64) {
	if c := f.take(token); c != nil {
		f.unanswered(c, timedOut, time.Now())
	}
}

func (f *forwarder) unanswered(c *call, why missed, now time.Time) {
	retry, err := c.unanswered(why, now)
	if retry {
		f.attempt(c)
		return
	}
	f.fail(c, err)
}
