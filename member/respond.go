package member

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hailsd/hail/events"
	"github.com/nats-io/nats.go"
)

// Responder answers heartbeats for one instance: its own subscription, for
// a member; the swarm answers many instances from one wildcard instead.
type Responder struct {
	sub  *nats.Subscription
	last atomic.Int64 // unix nanos of the last heartbeat
}

// Respond subscribes P.hb.<target> (events.HeartbeatTarget: the id, or
// <service>.<id> for a scoped instance) and answers every heartbeat with
// report().
// report is called on each beat, so its figures are current.
func Respond(nc *nats.Conn, subjects events.Subjects, target string, report func() events.HeartbeatReply) (*Responder, error) {
	r := &Responder{}
	id := target[strings.LastIndexByte(target, '.')+1:]
	sub, err := nc.Subscribe(subjects.Heartbeat(target), func(m *nats.Msg) {
		r.last.Store(time.Now().UnixNano())
		if m.Reply == "" {
			return
		}
		reply := report()
		reply.ID = id
		data, err := json.Marshal(reply)
		if err != nil {
			return // plain fields always encode
		}
		_ = m.Respond(data) // a lost answer is a missed heartbeat, which the tracker judges
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe heartbeats for %s: %w", id, err)
	}
	r.sub = sub
	return r, nil
}

// LastBeat is when the last heartbeat arrived; zero if none has.
func (r *Responder) LastBeat() time.Time {
	n := r.last.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Stop unsubscribes.
func (r *Responder) Stop() error {
	if err := r.sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
		return fmt.Errorf("stop heartbeat responder: %w", err)
	}
	return nil
}
