package embedded_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/bus/embedded"
)

// BeforeClients runs on the starting server, on an in-process connection
// (the auth callout's way in), and StartServer returns after it: the
// first client already finds what it set up listening.
func TestBeforeClientsServesTheFirstClient(t *testing.T) {
	var responder *nats.Conn
	tries := 0
	srv, err := embedded.StartServer(embedded.ServerOptions{Name: "before", Port: bustest.FreePort(t), StoreDir: t.TempDir(),
		BeforeClients: func(s *server.Server) error {
			tries++
			nc, err := nats.Connect("", nats.InProcessServer(s))
			if err != nil {
				return err
			}
			if _, err := nc.Subscribe("before.echo", func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
				nc.Close()
				return err
			}
			if err := nc.Flush(); err != nil {
				nc.Close()
				return err
			}
			responder = nc
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		responder.Close()
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if tries < 1 || responder == nil {
		t.Fatalf("BeforeClients ran %d times and set nothing up", tries)
	}
	nc := bustest.Connect(t, srv.ClientURL())
	m, err := nc.Request("before.echo", []byte("first"), 5*time.Second)
	if err != nil || string(m.Data) != "first" {
		t.Fatalf("the first client's request: %v", err)
	}
}

// A BeforeClients that cannot succeed fails the start with its own
// error, once the server's start is over, and leaves no server running.
func TestBeforeClientsFailureFailsTheStart(t *testing.T) {
	port := bustest.FreePort(t)
	_, err := embedded.StartServer(embedded.ServerOptions{Name: "before", Port: port, StoreDir: t.TempDir(),
		BeforeClients: func(*server.Server) error { return errors.New("no callout files") }})
	if err == nil || !strings.Contains(err.Error(), "no callout files") {
		t.Fatalf("start: %v, want the BeforeClients error", err)
	}
	// The port is free again: the server was shut down.
	if _, err := nats.Connect("nats://127.0.0.1:"+strconv.Itoa(port), nats.Timeout(time.Second)); err == nil {
		t.Error("a client connected to the server whose start failed")
	}
}
