package discovery_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/identity"
	"github.com/hailsd/hail/identity/identitytest"
	instside "github.com/hailsd/hail/member"
)

// PROTOCOL v1.6: discovery knows an identity's live connections from the
// servers' CONNECT and DISCONNECT advisories, and marks its instance
// critical only when the last of them closes, whatever its record says
// of its conn. The instances here announce no conn at all, and the
// heartbeats would take 30 s to judge them (interval 10 s): a critical
// within the tests' waits is a disconnect's.

// slowIdentityBeats leaves an identity's judgement to its disconnects.
var slowIdentityBeats = discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 10 * time.Second, Timeout: time.Second}}

// identityConn connects as id of echo, through url (the region's, or a
// proxy's).
func identityConn(t *testing.T, r *identitytest.Region, id *identity.Identity, url string) *nats.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	nc, err := bus.Connect(ctx, bus.ConnectOptions{URL: url, Extra: instside.IdentityOptions(id, "echo", r.Secret("echo"))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// announceIdentity makes id's instance answer its heartbeats on nc and
// announces it there, with no conn.
func announceIdentity(t *testing.T, nc *nats.Conn, id *identity.Identity) {
	t.Helper()
	resp, err := instside.Respond(nc, events.Subjects{}, events.HeartbeatTarget("echo", id.ID(), true), func() events.HeartbeatReply {
		return events.HeartbeatReply{Status: events.Passing}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Stop() })
	a := events.Announce{ID: id.ID(), Service: "echo", Version: "1.0.0", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100, Scoped: true}
	m, err := nc.Request(events.Subjects{}.Announce("echo")+"."+id.ID(), mustJSON(t, a), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code, text, isErr := events.ReplyError(m); isErr {
		t.Fatalf("announce answered %d %s", code, text)
	}
}

// healthOf hears id's health events.
func healthOf(t *testing.T, nc *nats.Conn, id *identity.Identity) <-chan events.HealthEvent {
	t.Helper()
	heard := make(chan events.HealthEvent, 8)
	sub, err := nc.Subscribe("hail.health.echo."+id.ID(), func(m *nats.Msg) {
		if ev, err := events.DecodeHealthEvent(m.Data); err == nil {
			heard <- ev
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return heard
}

// waitMetric waits until the set's series name is at least want.
func waitMetric(t *testing.T, set *metrics.Set, name string, want float64) {
	t.Helper()
	bustest.Eventually(t, 10*time.Second, func() error {
		if got := counter(set, name); got < want {
			return fmt.Errorf("%s = %v, want %v", name, got, want)
		}
		return nil
	})
}

const (
	stillConnected = `hail_discovery_disconnects_total{outcome="still_connected"}`
	identityConns  = `hail_discovery_identity_connections`
)

// notCritical checks id's instance was not marked: no health event, and
// its record still passing.
func notCritical(t *testing.T, kv *bus.Buckets, heard <-chan events.HealthEvent, id *identity.Identity) {
	t.Helper()
	select {
	case ev := <-heard:
		t.Fatalf("health event %+v, want none: another connection of the identity lives", ev)
	default:
	}
	e, err := kv.Instances.Get(t.Context(), "echo."+id.ID())
	if err != nil {
		t.Fatal(err)
	}
	if rec, err := events.DecodeInstanceRecord(e.Value()); err != nil || rec.Status != events.Passing {
		t.Fatalf("record %+v %v, want it passing", rec, err)
	}
}

// criticalAtOnce waits for id's critical health event of a disconnect.
func criticalAtOnce(t *testing.T, heard <-chan events.HealthEvent) {
	t.Helper()
	select {
	case ev := <-heard:
		if ev.Status != events.Critical || ev.Reason != "disconnected: Client Closed" {
			t.Fatalf("health event %+v, want critical at the disconnect", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not critical at its identity's last disconnect")
	}
}

// One identity with two connections at once (the same key and secret):
// the older closing marks nothing, the other closing then marks it at
// once.
func TestIdentityTwoConnections(t *testing.T) {
	r := identitytest.New(t, "echo")
	set := metrics.NewSet()
	_, kv := r.Discovery(discovery.Config{Metrics: set, Timing: slowIdentityBeats})
	health := r.Connect(events.RoleRouter)
	id, err := identity.New()
	if err != nil {
		t.Fatal(err)
	}
	older := identityConn(t, r, id, r.URL)
	announceIdentity(t, older, id)
	newer := identityConn(t, r, id, r.URL)
	waitMetric(t, set, identityConns, 2)
	heard := healthOf(t, health, id)

	older.Close()
	waitMetric(t, set, stillConnected, 1)
	notCritical(t, kv, heard, id)

	newer.Close()
	criticalAtOnce(t, heard)
}

// What discovery holds of an identity's connections goes once its
// instance's record has been gone for deregister_after: deregistered while
// its connection stays open, and not announced again, the identity is
// forgotten (a dead one's record goes deregister_after its silence, and a
// crashed server sends no DISCONNECT to forget it by).
func TestIdentityForgottenWhenItsRecordGoes(t *testing.T) {
	r := identitytest.New(t, "echo")
	set := metrics.NewSet()
	r.Discovery(discovery.Config{Metrics: set, Timing: discovery.Timing{
		Heartbeat:       discovery.Heartbeat{Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond},
		DeregisterAfter: 500 * time.Millisecond,
	}})
	id, err := identity.New()
	if err != nil {
		t.Fatal(err)
	}
	nc := identityConn(t, r, id, r.URL)
	announceIdentity(t, nc, id)
	waitMetric(t, set, identityConns, 1)
	m, err := nc.Request(events.Subjects{}.Deregister("echo")+"."+id.ID(), mustJSON(t, events.Deregister{ID: id.ID(), Service: "echo", Reason: "shutdown"}), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code, text, isErr := events.ReplyError(m); isErr {
		t.Fatalf("deregister answered %d %s", code, text)
	}
	waitMetric(t, set, "hail_discovery_identity_connections_forgotten_total", 1)
	if got := counter(set, identityConns); got != 0 {
		t.Errorf("%s = %v once its record went, want 0", identityConns, got)
	}
}

// An identity that reconnects is never marked by its old connection's
// DISCONNECT, which the server may send after the new connection's
// CONNECT, though its record names no conn: it opens its new connection
// before it closes the old one, or its connection drops on its side
// while the server holds the old one (a network that broke one way) and
// nats.go reconnects.
func TestIdentityReconnectNotMarkedByItsOldConnection(t *testing.T) {
	r := identitytest.New(t, "echo")
	set := metrics.NewSet()
	_, kv := r.Discovery(discovery.Config{Metrics: set, Timing: slowIdentityBeats})
	health := r.Connect(events.RoleRouter)

	t.Run("new connection before the old closes", func(t *testing.T) {
		id, err := identity.New()
		if err != nil {
			t.Fatal(err)
		}
		before := counter(set, stillConnected)
		old := identityConn(t, r, id, r.URL)
		announceIdentity(t, old, id)
		heard := healthOf(t, health, id)
		// The new connection announces the instance again (no conn),
		// and answers its heartbeats from now on.
		renewed := identityConn(t, r, id, r.URL)
		announceIdentity(t, renewed, id)
		old.Close()
		waitMetric(t, set, stillConnected, before+1)
		notCritical(t, kv, heard, id)
	})

	t.Run("connection dropped and back", func(t *testing.T) {
		id, err := identity.New()
		if err != nil {
			t.Fatal(err)
		}
		before := counter(set, stillConnected)
		p := startProxy(t, r.URL)
		reconnected := make(chan struct{}, 1)
		nc := identityConn(t, r, id, p.url)
		nc.SetReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} })
		announceIdentity(t, nc, id)
		heard := healthOf(t, health, id)
		oldCID, err := nc.GetClientID()
		if err != nil {
			t.Fatal(err)
		}
		conns := counter(set, identityConns)
		// The client's side breaks; the server's side of it stays
		// open, so the server says nothing yet.
		p.cutClients()
		select {
		case <-reconnected:
		case <-time.After(15 * time.Second):
			t.Fatal("the client did not reconnect")
		}
		if cid, _ := nc.GetClientID(); cid == oldCID {
			t.Fatalf("client id %d after the reconnect, want a new connection", cid)
		}
		waitMetric(t, set, identityConns, conns+1)
		// Now the server learns the old connection is gone: its
		// DISCONNECT comes after the new connection's CONNECT.
		p.cutServers(1)
		waitMetric(t, set, stillConnected, before+1)
		notCritical(t, kv, heard, id)

		// Its one connection left closing marks it.
		nc.Close()
		p.cutServers(0)
		criticalAtOnce(t, heard)
	})
}

// An identity discovery never heard connect (connected before the node
// started) is judged as v1.4 says: its DISCONNECT marks its instance
// unless the record names another connection.
func TestIdentityNeverHeardConnect(t *testing.T) {
	r := identitytest.New(t, "echo")
	cases := []struct {
		name string
		// newer: the record names another (newer) connection.
		newer    bool
		critical bool
		id       *identity.Identity
		nc       *nats.Conn
	}{
		{name: "no conn announced", critical: true},
		{name: "a newer conn announced", newer: true},
	}
	for i := range cases {
		id, err := identity.New()
		if err != nil {
			t.Fatal(err)
		}
		cases[i].id, cases[i].nc = id, identityConn(t, r, id, r.URL)
	}
	set := metrics.NewSet()
	_, kv := r.Discovery(discovery.Config{Metrics: set, Timing: slowIdentityBeats})
	health := r.Connect(events.RoleRouter)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, nc := c.id, c.nc
			resp, err := instside.Respond(nc, events.Subjects{}, events.HeartbeatTarget("echo", id.ID(), true), func() events.HeartbeatReply {
				return events.HeartbeatReply{Status: events.Passing}
			})
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Stop()
			a := events.Announce{ID: id.ID(), Service: "echo", Version: "1.0.0", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100, Scoped: true}
			if c.newer {
				client, _ := nc.GetClientID()
				a.Conn = &events.Conn{Server: nc.ConnectedServerId(), Client: client + 1000}
			}
			m, err := nc.Request(events.Subjects{}.Announce("echo")+"."+id.ID(), mustJSON(t, a), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if code, text, isErr := events.ReplyError(m); isErr {
				t.Fatalf("announce answered %d %s", code, text)
			}
			heard := healthOf(t, health, id)
			if got := counter(set, identityConns); got != 0 {
				t.Fatalf("%v identity connections held, want 0: they connected before the node started", got)
			}
			unknown := `hail_discovery_disconnects_total{outcome="unknown"}`
			before := counter(set, unknown)
			nc.Close()
			if c.critical {
				criticalAtOnce(t, heard)
				return
			}
			waitMetric(t, set, unknown, before+1)
			notCritical(t, kv, heard, id)
		})
	}
}

// proxy forwards TCP connections to a server, and can break either side
// of them alone: cutClients closes the clients' sockets and keeps the
// server's open (the server does not know), cutServers then closes those.
type proxy struct {
	url string
	ln  net.Listener

	mu      sync.Mutex
	servers []net.Conn // the server's side of each connection, oldest first
	clients []net.Conn
}

func startProxy(t *testing.T, to string) *proxy {
	t.Helper()
	u, err := url.Parse(to)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{url: u.Scheme + "://" + ln.Addr().String(), ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		p.cutClients()
		p.cutServers(0)
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", u.Host)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.clients, p.servers = append(p.clients, c), append(p.servers, s)
			p.mu.Unlock()
			// A client's side that breaks does not close the server's:
			// only cutServers does.
			wg.Go(func() { _, _ = io.Copy(s, c) })
			wg.Go(func() { _, _ = io.Copy(c, s); _ = c.Close() })
		}
	})
	return p
}

// cutClients closes the clients' side of every connection so far.
func (p *proxy) cutClients() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.clients {
		_ = c.Close()
	}
	p.clients = nil
}

// cutServers closes the server's side of the oldest most connections
// (all when most is 0).
func (p *proxy) cutServers(most int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if most == 0 || most > len(p.servers) {
		most = len(p.servers)
	}
	for _, s := range p.servers[:most] {
		_ = s.Close()
	}
	p.servers = p.servers[most:]
}
