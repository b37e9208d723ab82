package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/embedded"
	"github.com/hailsd/hail/events"
)

// The README's config block for a NATS server that is not hail's own
// works as it says: a server started with it sends a client's connect and
// disconnect into hail's account, and a client of hail's account cannot
// forge either.
func TestReadmeOwnServerConfig(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "**Your own NATS server.**")
	if !ok {
		t.Fatal("README has no **Your own NATS server.** paragraph")
	}
	_, rest, ok = strings.Cut(rest, "```\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no config block after **Your own NATS server.**")
	}
	for _, s := range events.ServerEvents {
		if strings.Count(block, s) != 2 {
			t.Errorf("the README's block exports and imports %s %d times in all, want 2 (an export and an import)", s, strings.Count(block, s))
		}
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "server.conf")
	full := fmt.Sprintf("server_name: own\nlisten: 127.0.0.1:-1\njetstream: {store_dir: %q}\n%s", filepath.Join(dir, "js"), block)
	if err := os.WriteFile(conf, []byte(full), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("the README's block: %v", err)
	}
	opts.NoSigs = true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("the README's block: %v", err)
	}
	go srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}

	violations := make(chan error, 4)
	hail, err := nats.Connect(srv.ClientURL(), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			select {
			case violations <- err:
			default:
			}
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer hail.Close()
	sub, err := hail.SubscribeSync(events.DisconnectAll)
	if err != nil {
		t.Fatal(err)
	}
	// PROTOCOL v1.6: the connect advisories too (an identity's live
	// connections).
	connects, err := hail.SubscribeSync(events.ConnectAll)
	if err != nil {
		t.Fatal(err)
	}
	if err := hail.Flush(); err != nil {
		t.Fatal(err)
	}

	other, err := nats.Connect(srv.ClientURL(), nats.Name("goes-away"))
	if err != nil {
		t.Fatal(err)
	}
	cid, err := other.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no disconnect advisory in hail's account: %v", err)
	}
	ev, err := events.DecodeDisconnect(m.Data)
	if err != nil || ev.Conn.Client != cid {
		t.Fatalf("advisory %s: %+v %v, want client %d", m.Subject, ev, err, cid)
	}
	// The first may be hail's own connection's, sent as the
	// subscription was made.
	var c *nats.Msg
	for deadline := time.Now().Add(5 * time.Second); ; {
		c, err = connects.NextMsg(time.Until(deadline))
		if err != nil {
			t.Fatalf("no connect advisory of client %d in hail's account: %v", cid, err)
		}
		cev, err := events.DecodeConnect(c.Data)
		if err != nil {
			t.Fatalf("connect advisory %s: %v", c.Subject, err)
		}
		if cev.Conn == ev.Conn {
			if cev.User != embedded.NoAuthUser {
				t.Errorf("connect advisory %+v, want user %s", cev, embedded.NoAuthUser)
			}
			break
		}
	}

	for _, forged := range []struct {
		subject string
		data    []byte
		sub     *nats.Subscription
	}{
		{strings.Replace(events.DisconnectAll, "*", "HAIL", 1), m.Data, sub},
		{strings.Replace(events.ConnectAll, "*", "HAIL", 1), c.Data, connects},
	} {
		if err := hail.Publish(forged.subject, forged.data); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-violations:
			t.Logf("forged %s refused: %v", forged.subject, err)
		case <-time.After(5 * time.Second):
			t.Fatalf("a forged %s was not refused", forged.subject)
		}
		// The server refused the publish before it answered the
		// violation; a flush makes sure nothing it did deliver is still
		// on the way.
		if err := hail.Flush(); err != nil {
			t.Fatal(err)
		}
		if n, _, _ := forged.sub.Pending(); n != 0 {
			t.Errorf("the forged %s reached hail's account (%d pending)", forged.subject, n)
		}
	}
}
