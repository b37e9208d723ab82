package discovery_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/identity"
	"github.com/hailsd/hail/identity/identitytest"
	instside "github.com/hailsd/hail/member"
)

// With identities the server names the instance a closed connection was:
// its CONNECT and DISCONNECT advisories' user is <S>.<id> (PROTOCOL v1.6).
// Discovery heard each of these connect, so their DISCONNECT marks the
// instance critical whatever it announced as its conn: none, its own, or
// another (the server's word counts, not the announce's; an identity
// discovery never heard connect is TestIdentityNeverHeardConnect's). The
// heartbeats here would take 30 s to find any (interval 10 s).
func TestIdentityDisconnectNamesTheInstance(t *testing.T) {
	r := identitytest.New(t, "echo")
	r.Discovery(discovery.Config{Timing: slowIdentityBeats})
	health := r.Connect(events.RoleRouter)
	for _, c := range []struct {
		name string
		conn func(nc *nats.Conn) *events.Conn // what the announce says
	}{
		{"no conn announced", func(*nats.Conn) *events.Conn { return nil }},
		{"its own conn announced", func(nc *nats.Conn) *events.Conn {
			client, _ := nc.GetClientID()
			return &events.Conn{Server: nc.ConnectedServerId(), Client: client}
		}},
		{"another conn announced", func(nc *nats.Conn) *events.Conn {
			client, _ := nc.GetClientID()
			return &events.Conn{Server: nc.ConnectedServerId(), Client: client + 1000}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, err := identity.New()
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			nc, err := bus.Connect(ctx, bus.ConnectOptions{URL: r.URL, Extra: instside.IdentityOptions(id, "echo", r.Secret("echo"))})
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			resp, err := instside.Respond(nc, events.Subjects{}, events.HeartbeatTarget("echo", id.ID(), true), func() events.HeartbeatReply {
				return events.HeartbeatReply{Status: events.Passing}
			})
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Stop()
			a := events.Announce{ID: id.ID(), Service: "echo", Version: "1.0.0", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100, Scoped: true, Conn: c.conn(nc)}
			m, err := nc.Request(events.Subjects{}.Announce("echo")+"."+id.ID(), mustJSON(t, a), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if code, text, isErr := events.ReplyError(m); isErr {
				t.Fatalf("announce answered %d %s", code, text)
			}
			heard := make(chan events.HealthEvent, 8)
			sub, err := health.Subscribe("hail.health.echo."+id.ID(), func(m *nats.Msg) {
				if ev, err := events.DecodeHealthEvent(m.Data); err == nil {
					heard <- ev
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			if err := health.Flush(); err != nil {
				t.Fatal(err)
			}
			nc.Close()
			select {
			case ev := <-heard:
				if ev.Status != events.Critical || ev.Reason != "disconnected: Client Closed" {
					t.Fatalf("health event %+v, want critical at the disconnect", ev)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("not critical at its identity's disconnect")
			}
		})
	}
}
