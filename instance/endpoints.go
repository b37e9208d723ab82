package instance

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/hailsd/hail/bus"
)

// endpoints serve an instance's endpoints until Stop: a NATS micro
// service (bus.Service), or plain subscriptions for an instance with its
// own identity (PROTOCOL v1.6), whose permissions name its own subjects
// alone and not micro's $SRV ones: a micro service there would be nine
// permissions violations at every start and reconnect, logged by client
// and server, for a `nats micro ls` that cannot see it anyway.
type endpoints interface {
	// Stop stops taking messages and waits, until ctx ends, until the
	// handlers have been called for every message already taken. Safe
	// to call twice.
	Stop(ctx context.Context) error
}

// serveEndpoints serves eps as the micro service cfg, or, plain, as
// subscriptions alone.
func serveEndpoints(nc *nats.Conn, cfg micro.Config, eps []bus.Endpoint, plain bool) (endpoints, error) {
	if !plain {
		svc, err := bus.AddService(nc, cfg, eps)
		if err != nil {
			return nil, err
		}
		return svc, nil
	}
	p := &plainEndpoints{nc: nc}
	for _, e := range eps {
		var sub *nats.Subscription
		var err error
		if e.Queue == "" {
			sub, err = nc.Subscribe(e.Subject, e.Handler)
		} else {
			sub, err = nc.QueueSubscribe(e.Subject, e.Queue, e.Handler)
		}
		if err != nil {
			_ = p.Stop(context.Background())
			return nil, fmt.Errorf("endpoint %s on %s: %w", e.Name, e.Subject, err)
		}
		p.subs = append(p.subs, sub)
	}
	return p, nil
}

// plainEndpoints are an identity's endpoints, one subscription each.
type plainEndpoints struct {
	nc   *nats.Conn
	subs []*nats.Subscription
}

// Stop drains the subscriptions (what the client holds is still
// delivered), then waits as bus.Service.Stop does: a flush means the
// server has seen the unsubscribes, and a barrier runs once every async
// subscription has delivered what it held before it.
func (p *plainEndpoints) Stop(ctx context.Context) error {
	subs := p.subs
	p.subs = nil
	for _, s := range subs {
		if err := s.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
			return fmt.Errorf("stop endpoints: %w", err)
		}
	}
	if len(subs) == 0 {
		return nil
	}
	if err := p.nc.FlushWithContext(ctx); err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) {
			return nil
		}
		return fmt.Errorf("stop endpoints: flush: %w", err)
	}
	done := make(chan struct{})
	if err := p.nc.Barrier(func() { close(done) }); err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) {
			return nil
		}
		return fmt.Errorf("stop endpoints: %w", err)
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop endpoints: wait for delivered messages: %w", ctx.Err())
	}
}
