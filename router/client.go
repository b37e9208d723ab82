package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	"github.com/hailsd/hail/events"
)

// Client is client-side routing for Go callers: the router's table,
// strategies and retries in the caller's process, sending straight to
// P.inst.<id>.<endpoint> and so saving the hop through a router. Each
// request blocks its caller's goroutine, like nc.Request.
type Client struct {
	nc     *nats.Conn
	table  *Table
	log    *slog.Logger
	cancel context.CancelFunc
	g      *errgroup.Group
}

// NewClient starts a client on nc and waits until its table is loaded (or
// ctx ends). Close it when done.
func NewClient(ctx context.Context, nc *nats.Conn, cfg TableConfig) (*Client, error) {
	t, err := NewTable(nc, cfg)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error { return t.Run(gctx) })
	c := &Client{nc: nc, table: t, log: t.cfg.Logger.With("component", "client"), cancel: cancel, g: g}
	select {
	case <-t.Ready():
		return c, nil
	case <-gctx.Done():
		return nil, fmt.Errorf("routing table: %w", c.Close())
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for routing table: %w", errors.Join(ctx.Err(), c.Close()))
	}
}

// Request sends data to one instance of service's endpoint.
func (c *Client) Request(ctx context.Context, service, endpoint string, data []byte) (*nats.Msg, error) {
	return c.RequestMsg(ctx, service, endpoint, &nats.Msg{Data: data})
}

// RequestMsg sends m's data and headers (Hail-Key, or the route's
// hash_header, chooses the instance under "hash") to one instance of
// service's endpoint. The instance's reply is returned as it is, error
// headers included; a routing failure is an *Error. The call ends with ctx
// or the route's timeout, whichever is first.
func (c *Client) RequestMsg(ctx context.Context, service, endpoint string, m *nats.Msg) (*nats.Msg, error) {
	return roundTrip(ctx, c.nc, c.table, c.log, service, endpoint, m)
}

// roundTrip routes m with requests that block the calling goroutine.
func roundTrip(ctx context.Context, nc *nats.Conn, table *Table, log *slog.Logger, service, endpoint string, m *nats.Msg) (*nats.Msg, error) {
	deadline, _ := ctx.Deadline()
	call, rerr := newCall(table, log, service, endpoint, m, deadline)
	if rerr != nil {
		call.end(outcomeOf(rerr))
		return nil, rerr
	}
	for {
		t, timeout, rerr := call.next()
		if rerr != nil {
			call.end(outcomeOf(rerr))
			return nil, rerr
		}
		actx, cancel := context.WithTimeout(ctx, timeout)
		reply, err := nc.RequestMsgWithContext(actx, &nats.Msg{Subject: call.subject(), Header: m.Header, Data: m.Data})
		cancel()
		now := time.Now()
		switch {
		case err == nil:
			out := call.answered(reply, now)
			call.end(outcomeOK)
			return out, nil
		case ctx.Err() != nil:
			// The caller gave up; that says nothing about the instance.
			t.Done(Result{Latency: now.Sub(call.sent), At: now})
			call.end(outcomeCanceled)
			return nil, ctx.Err()
		case errors.Is(err, nats.ErrNoResponders), errors.Is(err, context.DeadlineExceeded):
			why := noResponders
			if errors.Is(err, context.DeadlineExceeded) {
				why = timedOut
			}
			retry, rerr := call.unanswered(why, now)
			if !retry {
				call.end(outcomeOf(rerr))
				return nil, rerr
			}
		default:
			t.Done(Result{Latency: now.Sub(call.sent), At: now})
			rerr := &Error{events.CodeUnavailable, fmt.Sprintf("request %s: %v", call.subject(), err)}
			call.end(outcomeOf(rerr))
			return nil, rerr
		}
	}
}

// Close stops the client's table. Safe to call twice.
func (c *Client) Close() error {
	c.cancel()
	return c.g.Wait()
}
