package swarm_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/swarm"
)

// After its connection comes back (the server restarted), every instance
// of the swarm announces again with the new conn (PROTOCOL v1.4), though
// heartbeats would not make it (a minute's interval).
func TestSwarmAnnouncesNewConnAfterReconnect(t *testing.T) {
	port, dir := bustest.FreePort(t), t.TempDir()
	start := func() *server.Server {
		return bustest.RunServerWith(t, func(o *server.Options) { o.Port, o.StoreDir = port, dir })
	}
	s := start()
	opts := []nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(20 * time.Millisecond)}
	disc := bustest.Connect(t, s.ClientURL(), opts...)
	// The swarm's connection comes back after disc's: an announce that
	// finds no discovery yet is retried only after three intervals.
	nc := bustest.Connect(t, s.ClientURL(), append(opts, bustest.ReconnectAfter(disc))...)
	var mu sync.Mutex
	conns := map[string]events.Conn{} // the last announced, by id
	if _, err := disc.Subscribe(events.Subjects{}.AnnounceAll(), func(m *nats.Msg) {
		a, err := events.DecodeAnnounce(m.Data)
		if err == nil && a.Conn != nil {
			mu.Lock()
			conns[a.ID] = *a.Conn
			mu.Unlock()
		}
		ack, _ := json.Marshal(events.Ack{OK: true, ID: a.ID})
		_ = m.Respond(ack)
	}); err != nil {
		t.Fatal(err)
	}
	if err := disc.Flush(); err != nil {
		t.Fatal(err)
	}
	const n = 5
	sw, err := swarm.New([]*nats.Conn{nc}, swarm.Config{Instances: n, Services: 1, Name: "sw", HeartbeatInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	run(t, sw.Run)
	on := func(server string) error {
		mu.Lock()
		defer mu.Unlock()
		cid, _ := nc.GetClientID()
		if len(conns) != n {
			return fmt.Errorf("%d instances announced a conn, want %d", len(conns), n)
		}
		for id, c := range conns {
			if c.Server != server || c.Client != cid {
				return fmt.Errorf("%s announced %+v, want server %s client %d", id, c, server, cid)
			}
		}
		return nil
	}
	// Every announce answered before the restart: an answer lost with the
	// server leaves its announce waiting out AnnounceTimeout (an interval,
	// a minute here) before the instance takes note of the reconnect.
	bustest.Eventually(t, 10*time.Second, func() error {
		if r := sw.Registered(); r != n {
			return fmt.Errorf("%d instances heard their answer, want %d", r, n)
		}
		return on(s.ID())
	})
	s.Shutdown()
	s.WaitForShutdown()
	s = start()
	bustest.Eventually(t, 20*time.Second, func() error { return on(s.ID()) })
}
