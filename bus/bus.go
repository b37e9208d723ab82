// Package bus is hail's way onto NATS: connecting with reconnects that never
// give up, embedding a server (one node or an in-process cluster) for the dev
// stack and the tests, and creating the KV buckets of PROTOCOL.md.
package bus

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
)

// ConnectOptions says where and as whom to connect.
type ConnectOptions struct {
	URL    string
	Name   string // client name, shown by `nats server report connections`
	Logger *slog.Logger
	// Extra options appended after hail's own, for tests and callers with
	// special needs (credentials, TLS).
	Extra []nats.Option
}

// maxBackoff caps the reconnect delay: long enough not to hammer a server
// that is restarting, short enough that heartbeats resume within an interval
// or two of its return.
const maxBackoff = 2 * time.Second

// Backoff is the reconnect delay after the given number of attempts:
// exponential from 50 ms, capped at maxBackoff, with full jitter so a fleet
// of clients does not reconnect in lock step.
func Backoff(attempts int) time.Duration {
	d := 50 * time.Millisecond << min(attempts, 6)
	d = min(d, maxBackoff)
	return d/2 + rand.N(d/2+1)
}

// Connect dials NATS and waits until connected or ctx ends. Once connected
// the connection reconnects forever; each disconnect and reconnect is
// logged.
func Connect(ctx context.Context, o ConnectOptions) (*nats.Conn, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "bus")
	connected := make(chan struct{}, 1)
	signal := func() {
		select {
		case connected <- struct{}{}:
		default:
		}
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.CustomReconnectDelay(Backoff),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("connected to NATS", "url", nc.ConnectedUrlRedacted(), "server", nc.ConnectedServerName())
			signal()
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected from NATS", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("reconnected to NATS", "url", nc.ConnectedUrlRedacted(), "server", nc.ConnectedServerName())
			signal()
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Error("NATS async error", "subject", subject, "err", err)
		}),
	}
	opts = append(opts, o.Extra...)
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", o.URL, err)
	}
	if nc.IsConnected() {
		return nc, nil
	}
	log.Info("waiting for NATS", "url", o.URL)
	select {
	case <-connected:
		return nc, nil
	case <-ctx.Done():
		nc.Close()
		return nil, fmt.Errorf("connect to %s: %w", o.URL, ctx.Err())
	}
}

// Drain drains nc (subscriptions finish what they hold, publishes are
// flushed) and waits up to timeout for it to close, then closes it anyway.
func Drain(nc *nats.Conn, timeout time.Duration) {
	if nc == nil || nc.IsClosed() {
		return
	}
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return
	}
	select {
	case <-closed:
	case <-time.After(timeout):
		nc.Close()
	}
}
