package member

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
)

// ErrUnanswered says a deregister got no answer; it was published once
// more without waiting, which reaches a discovery node that comes back
// before the heartbeats would have found the instance gone.
var ErrUnanswered = errors.New("not acknowledged")

// Conn is the member side of one NATS connection: what every member on it
// shares, and the one path by which hail's instances announce and
// deregister. Whatever an announce says about the connection rather than
// the service, and the subjects a member speaks on, are set here, so that
// the SDK, the agent (one Conn for all its services) and the swarm (one
// per connection) follow any change of them at once. A Conn hears
// hail.discover once for all its members.
type Conn struct {
	nc       *nats.Conn
	subjects events.Subjects
	interval time.Duration
	// identity is the identity nc was made as (NewIdentityConn), nil for
	// a connection of a region without identities.
	identity *owner

	mu sync.Mutex
	// members are held so that what reaches the connection once (a
	// discover; a reconnect, which changes what an announce says of the
	// connection) reaches each of them.
	members  map[*Member]struct{}
	discover *nats.Subscription
	// reconnects hears the connection come back, while members are
	// joined: each announces again with its new conn (PROTOCOL v1.4).
	reconnects chan nats.Status
}

// NewConn is the member side of nc; interval is discovery's heartbeat
// interval (default 1 s), which the member's timeouts and re-announce rule
// follow. Nothing is subscribed until a member joins.
func NewConn(nc *nats.Conn, subjects events.Subjects, interval time.Duration) *Conn {
	if interval <= 0 {
		interval = time.Second
	}
	return &Conn{nc: nc, subjects: subjects, interval: interval, members: map[*Member]struct{}{}}
}

// Interval is discovery's heartbeat interval the Conn follows.
func (c *Conn) Interval() time.Duration { return c.interval }

// Current is the connection as it is now (PROTOCOL v1.4's conn), or nil
// while it is not connected or the server gives no client id.
func (c *Conn) Current() *events.Conn {
	server := c.nc.ConnectedServerId()
	client, err := c.nc.GetClientID()
	if server == "" || err != nil || client == 0 {
		return nil
	}
	return &events.Conn{Server: server, Client: client}
}

// Announce sends a, with the connection it goes out on (Current), and
// reads discovery's answer (Classify), waiting at most AnnounceTimeout.
func (c *Conn) Announce(ctx context.Context, a events.Announce) Outcome {
	a.Conn = c.Current()
	data, err := json.Marshal(a)
	if err != nil {
		// Plain fields always encode; a failure here is a bug, and
		// sending again would not mend it.
		return Outcome{Kind: Refused, Err: fmt.Errorf("encode announce: %w", err)}
	}
	ctx, cancel := context.WithTimeout(ctx, AnnounceTimeout(c.interval))
	defer cancel()
	return Classify(c.nc.RequestWithContext(ctx, c.announceSubject(a.Service, a.ID), data))
}

// Deregister tells discovery that the instance id of service leaves, and
// waits for its answer at most AnnounceTimeout. Unanswered, it is
// published once more and the error wraps ErrUnanswered.
func (c *Conn) Deregister(ctx context.Context, service, id, reason string) error {
	data, err := json.Marshal(events.Deregister{ID: id, Service: service, Reason: reason})
	if err != nil {
		return fmt.Errorf("encode deregister: %w", err)
	}
	subject := c.deregisterSubject(service, id)
	rctx, cancel := context.WithTimeout(ctx, AnnounceTimeout(c.interval))
	defer cancel()
	reply, err := c.nc.RequestWithContext(rctx, subject, data)
	if err != nil {
		if perr := c.nc.Publish(subject, data); perr != nil {
			return fmt.Errorf("deregister %s: %w", id, perr)
		}
		return fmt.Errorf("deregister %s: %w: %w", id, ErrUnanswered, err)
	}
	if code, text, isErr := events.ReplyError(reply); isErr {
		return fmt.Errorf("deregister %s refused: %d %s", id, code, text)
	}
	return nil
}

// join adds m to the members that hear hail.discover, subscribing it for
// the first.
func (c *Conn) join(m *Member) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.discover == nil {
		sub, err := c.nc.Subscribe(c.subjects.Discover(), c.discovered)
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", c.subjects.Discover(), err)
		}
		c.discover = sub
	}
	if c.reconnects == nil {
		c.reconnects = c.nc.StatusChanged(nats.CONNECTED)
		go c.reconnected(c.reconnects)
	}
	c.members[m] = struct{}{}
	return nil
}

// reconnected makes every member announce again when the connection is
// back (a new server id and client id), until leave closes ch.
func (c *Conn) reconnected(ch chan nats.Status) {
	for range ch {
		c.mu.Lock()
		for m := range c.members {
			m.Changed()
		}
		c.mu.Unlock()
	}
}

// leave removes m; the last one out unsubscribes hail.discover.
func (c *Conn) leave(m *Member) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.members, m)
	if len(c.members) > 0 {
		return nil
	}
	if c.reconnects != nil {
		c.nc.RemoveStatusListener(c.reconnects)
		c.reconnects = nil
	}
	if c.discover == nil {
		return nil
	}
	sub := c.discover
	c.discover = nil
	if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
		return fmt.Errorf("unsubscribe %s: %w", sub.Subject, err)
	}
	return nil
}

// discovered hands a discover's spread to every member; each picks its
// own point within it.
func (c *Conn) discovered(msg *nats.Msg) {
	spread := Spread(msg.Data, c.interval)
	c.mu.Lock()
	defer c.mu.Unlock()
	for m := range c.members {
		m.discovered(spread)
	}
}
