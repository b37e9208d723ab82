package identitytest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/identity"
	"github.com/hailsd/hail/member"
)

// Fleet is n instances of one service, each with its own identity,
// connection (member.IdentityOptions: the reconnects after a restart
// spread as PROTOCOL v1.6 says) and member, announcing scoped and
// answering heartbeats passing, in the test's process.
type Fleet struct {
	Members []*member.Member
	conns   []*nats.Conn
}

// StartFleet connects and joins n identities of service at url with the
// service's secret, 16 at a time; extra are appended to every
// connection's options. They are closed when the test ends.
func StartFleet(tb testing.TB, url, service, secret string, n int, extra ...nats.Option) *Fleet {
	tb.Helper()
	f := &Fleet{Members: make([]*member.Member, n), conns: make([]*nats.Conn, n)}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := f.join(url, service, secret, i, extra); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	tb.Cleanup(func() {
		// In parallel, connections first: a connection in the middle
		// of a reconnect holds its lock until its handshake ends.
		var closing sync.WaitGroup
		for i, c := range f.conns {
			closing.Go(func() {
				if c != nil {
					c.Close()
				}
				if m := f.Members[i]; m != nil {
					_ = m.Close()
				}
			})
		}
		closing.Wait()
	})
	select {
	case err := <-errs:
		tb.Fatal(err)
	default:
	}
	return f
}

func (f *Fleet) join(url, service, secret string, i int, extra []nats.Option) error {
	id, err := identity.New()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts := append(member.IdentityOptions(id, service, secret), extra...)
	nc, err := bus.Connect(ctx, bus.ConnectOptions{URL: url, Extra: opts})
	if err != nil {
		return fmt.Errorf("identity %d: %w", i, err)
	}
	f.conns[i] = nc
	a := events.Announce{ID: id.ID(), Service: service, Version: "1.0.0", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100, Scoped: true}
	m, err := member.NewIdentityConn(nc, events.Subjects{}, time.Second, service, id.ID()).Join(member.Config{
		Service: service, ID: id.ID(), Scoped: true,
		Announce: func() events.Announce { return a },
		Report:   func() events.HeartbeatReply { return events.HeartbeatReply{Status: events.Passing} },
	})
	if err != nil {
		return fmt.Errorf("identity %d: %w", i, err)
	}
	f.Members[i] = m
	return nil
}

// Unheard is how many of the fleet have answered no heartbeat since
// since.
func (f *Fleet) Unheard(since time.Time) int {
	n := 0
	for _, m := range f.Members {
		if !m.LastBeat().After(since) {
			n++
		}
	}
	return n
}
