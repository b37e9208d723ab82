package member_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/member"
)

// A member announces the connection it speaks on, and announces again
// with the new one when its connection comes back after the server
// restarted (PROTOCOL v1.4), without waiting for a discover or for its
// heartbeats to stop.
func TestAnnouncesConnAgainAfterReconnect(t *testing.T) {
	port := bustest.FreePort(t)
	dir := t.TempDir()
	start := func() *server.Server {
		return bustest.RunServerWith(t, func(o *server.Options) { o.Port, o.StoreDir = port, dir })
	}
	s := start()
	url := s.ClientURL()
	opts := []nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(20 * time.Millisecond)}
	disc := bustest.Connect(t, url, opts...)
	// The member's connection comes back after disc's: an announce that
	// finds no discovery yet is retried only after three intervals.
	nc := bustest.Connect(t, url, append(opts, bustest.ReconnectAfter(disc))...)

	var mu sync.Mutex
	var conns []events.Conn
	if _, err := disc.Subscribe(events.Subjects{}.AnnounceAll(), func(m *nats.Msg) {
		a, err := events.DecodeAnnounce(m.Data)
		// Answered before it is counted: the flushes after the first
		// announce then bring the answer to the member before the restart.
		ack, _ := json.Marshal(events.Ack{OK: true, ID: a.ID})
		_ = m.Respond(ack)
		if err == nil && a.Conn != nil {
			mu.Lock()
			conns = append(conns, *a.Conn)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := disc.Flush(); err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	// An interval of a minute: neither silence nor a retry announces
	// again within the test, only the reconnect.
	m, err := member.NewConn(nc, events.Subjects{}, time.Minute).Join(member.Config{
		Service: "echo", ID: id,
		Announce: func() events.Announce {
			return events.Announce{ID: id, Service: "echo", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: events.DefaultWeight}
		},
		Report: func() events.HeartbeatReply { return events.HeartbeatReply{} },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	last := func(n int) (events.Conn, error) {
		mu.Lock()
		defer mu.Unlock()
		if len(conns) < n {
			return events.Conn{}, fmt.Errorf("%d announces with a conn, want %d", len(conns), n)
		}
		return conns[n-1], nil
	}
	bustest.Eventually(t, 10*time.Second, func() error { _, err := last(1); return err })
	first, _ := last(1)
	cid, _ := nc.GetClientID()
	if first.Server != s.ID() || first.Client != cid {
		t.Fatalf("announced conn %+v, want server %s client %d", first, s.ID(), cid)
	}

	// The answer reaches nc before the restart (disc's flush: the server
	// has it; nc's: nc has read it): an answer lost with the server leaves
	// the announce waiting out AnnounceTimeout (an interval, a minute
	// here) before the member takes note of the reconnect.
	for _, c := range []*nats.Conn{disc, nc} {
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	s.Shutdown()
	s.WaitForShutdown()
	s = start()
	bustest.Eventually(t, 20*time.Second, func() error {
		got, err := last(2)
		if err != nil {
			return err
		}
		cid, _ := nc.GetClientID()
		if got.Server != s.ID() || got.Client != cid {
			return fmt.Errorf("announced %+v after the reconnect, want server %s client %d", got, s.ID(), cid)
		}
		return nil
	})
}
