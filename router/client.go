package router

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"
)

// Client is client-side routing for Go callers: the router's table,
// strategies and retries in the caller's process, sending straight to
// P.inst.<id>.<endpoint> and so saving the hop through a router.
type Client struct {
	table  *Table
	fwd    *Forwarder
	cancel context.CancelFunc
	g      *errgroup.Group
}

// NewClient starts a client on nc and waits until its table is loaded (or
// ctx ends). Close it when done.
func NewClient(ctx context.Context, nc *nats.Conn, cfg Config) (*Client, error) {
	t, err := NewTable(nc, cfg.Table)
	if err != nil {
		return nil, err
	}
	fwd, err := NewForwarder(nc, t, ForwarderConfig{Subjects: t.cfg.Subjects, MaxInflight: cfg.MaxInflight, Logger: t.cfg.Logger})
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error { return t.Run(gctx) })
	c := &Client{table: t, fwd: fwd, cancel: cancel, g: g}
	select {
	case <-t.Ready():
		return c, nil
	case <-gctx.Done():
		return nil, fmt.Errorf("routing table: %w", c.Close(context.WithoutCancel(ctx)))
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for routing table: %w", c.Close(context.WithoutCancel(ctx)))
	}
}

// Table is the client's routing table.
func (c *Client) Table() *Table { return c.table }

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
	type result struct {
		m   *nats.Msg
		err error
	}
	ch := make(chan result, 1)
	deadline, _ := ctx.Deadline()
	c.fwd.Forward(service, endpoint, m, deadline, func(r *nats.Msg, err error) { ch <- result{r, err} })
	select {
	case r := <-ch:
		return r.m, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close stops the client, letting calls in progress end first (until ctx
// ends). Safe to call twice.
func (c *Client) Close(ctx context.Context) error {
	err := c.fwd.Close(ctx)
	c.cancel()
	if werr := c.g.Wait(); werr != nil && err == nil {
		err = werr
	}
	return err
}
