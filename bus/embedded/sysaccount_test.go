package embedded_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
)

// A server hail starts puts a client without credentials in account HAIL,
// with JetStream, where the disconnect advisories of its clients arrive
// on $SYS.ACCOUNT.*.DISCONNECT, and where nobody may publish one.
func TestDisconnectAdvisoriesReachHail(t *testing.T) {
	s := bustest.RunServer(t)
	perm := make(chan error, 4)
	watcher := bustest.Connect(t, s.ClientURL(), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { perm <- err }))
	sub, err := watcher.SubscribeSync(events.DisconnectAll)
	if err != nil {
		t.Fatal(err)
	}
	if err := watcher.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := watcher.Request("$JS.API.INFO", nil, 5*time.Second); err != nil {
		t.Fatalf("JetStream in the account of a client without credentials: %v", err)
	}

	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	cid, err := nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	msg, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no disconnect advisory: %v", err)
	}
	if want := "$SYS.ACCOUNT.HAIL.DISCONNECT"; msg.Subject != want {
		t.Errorf("subject %s, want %s", msg.Subject, want)
	}
	d, err := events.DecodeDisconnect(msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	if d.Conn != (events.Conn{Server: s.ID(), Client: cid}) || d.Reason != "Client Closed" {
		t.Errorf("got %+v, want server %s client %d, Client Closed", d, s.ID(), cid)
	}

	// A forgery: refused by the server, and never delivered.
	forged := `{"server":{"id":"` + s.ID() + `"},"client":{"id":1},"reason":"Read Error"}`
	if err := watcher.Publish("$SYS.ACCOUNT.HAIL.DISCONNECT", []byte(forged)); err != nil {
		t.Fatal(err)
	}
	if err := watcher.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-perm:
		if !errors.Is(err, nats.ErrPermissionViolation) && !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Errorf("forged publish: %v, want a permissions violation", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("a forged advisory was not refused")
	}
	if m, err := sub.NextMsg(200 * time.Millisecond); err == nil {
		t.Errorf("a forged advisory was delivered: %s", m.Data)
	}
}

// A server's shutdown and lame duck events reach HAIL too (discovery holds
// the judgement of that server's clients' silence on them), and nobody
// there may forge one: every subject of events.ServerEvents is refused,
// the connect advisories (PROTOCOL v1.6) among them.
func TestServerEventsCannotBeForged(t *testing.T) {
	s := bustest.RunServer(t)
	perm := make(chan error, 8)
	nc := bustest.Connect(t, s.ClientURL(), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { perm <- err }))
	for _, subject := range []string{"$SYS.SERVER." + s.ID() + ".SHUTDOWN", "$SYS.SERVER." + s.ID() + ".LAMEDUCK", "$SYS.ACCOUNT.HAIL.DISCONNECT", "$SYS.ACCOUNT.HAIL.CONNECT"} {
		t.Run(subject, func(t *testing.T) {
			if err := nc.Publish(subject, []byte("{}")); err != nil {
				t.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-perm:
				if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
					t.Errorf("forged %s: %v, want a permissions violation", subject, err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("a forged %s was not refused", subject)
			}
		})
	}
	// The server's own shutdown reaches a subscriber of HAIL.
	sub, err := nc.SubscribeSync(events.ServerShutdownAll)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	id := s.ID()
	go s.Shutdown()
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no shutdown event: %v", err)
	}
	if want := "$SYS.SERVER." + id + ".SHUTDOWN"; m.Subject != want {
		t.Errorf("subject %s, want %s", m.Subject, want)
	}
}
