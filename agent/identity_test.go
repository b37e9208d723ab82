package agent_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/agent"
	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/identity"
	"github.com/hailsd/hail/identity/identitytest"
	"github.com/hailsd/hail/member"
)

// With Config.Identity, each service an agent registers is its own
// identity (PROTOCOL v1.6) on its own connection, in a region set up as
// secure init --identities: registered under the identity's id (kept in
// a seed file, so the same when the service is registered again),
// scoped, passing, its bridge reached on its own subject; removed from
// the config, it is deregistered and its connection closed. An entry
// whose fixed id is not its identity's is refused.
func TestAgentIdentities(t *testing.T) {
	r := identitytest.New(t, "echo", "greeter")
	_, kv := r.Discovery(discovery.Config{})
	seeds := t.TempDir()
	conns := map[string]*nats.Conn{}
	cfg := agent.Config{Identity: func(ctx context.Context, service string) (*nats.Conn, *identity.Identity, error) {
		id, err := member.LoadOrNew(filepath.Join(seeds, service+".seed"))
		if err != nil {
			return nil, nil, err
		}
		nc, err := bus.Connect(ctx, bus.ConnectOptions{URL: r.URL, Extra: member.IdentityOptions(id, service, r.Secret(service))})
		if err == nil {
			conns[service] = nc
		}
		return nc, id, err
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	defer srv.Close()
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	entry := func(name string) agent.ServiceConfig {
		return agent.ServiceConfig{Name: name, Address: host, Port: p,
			Bridge: agent.BridgeConfig{BaseURL: srv.URL, Endpoints: []agent.BridgeEndpoint{{Name: "http", Path: "*"}}}}
	}
	a := agent.New(r.Connect(events.RoleRouter), cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, []agent.ServiceConfig{entry("echo"), entry("greeter")}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	ids := map[string]string{}
	for _, service := range []string{"echo", "greeter"} {
		bustest.Eventually(t, 10*time.Second, func() error {
			id, ok := a.ID(service)
			if !ok {
				return fmt.Errorf("%s not registered by the agent", service)
			}
			e, err := kv.Instances.Get(t.Context(), events.InstanceKey(service, id))
			if err != nil {
				return err
			}
			rec, err := events.DecodeInstanceRecord(e.Value())
			if err != nil || !rec.Scoped || rec.Status != events.Passing {
				return fmt.Errorf("%s: %+v %v, want scoped and passing", service, rec, err)
			}
			ids[service] = id
			return nil
		})
		seed, err := identity.Load(filepath.Join(seeds, service+".seed"))
		if err != nil || seed.ID() != ids[service] {
			t.Fatalf("%s registered as %s, its seed's id %v %v", service, ids[service], seed, err)
		}
	}
	router := r.Connect(events.RoleRouter)
	if m, err := router.Request(events.Subjects{}.InstOf("echo", ids["echo"], "http", true), nil, 5*time.Second); err != nil || string(m.Data) != "ok" {
		t.Errorf("echo's bridge on its own subject: %v %v", m, err)
	}
	// greeter leaves the config: deregistered, its connection closed.
	if err := a.Apply([]agent.ServiceConfig{entry("echo")}); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Instances.Get(t.Context(), events.InstanceKey("greeter", ids["greeter"])); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("greeter after its removal: %v, want it deregistered", err)
	}
	if !conns["greeter"].IsClosed() {
		t.Error("greeter's connection left open")
	}
	// An entry with a fixed id that is not its identity's.
	bad := entry("greeter")
	bad.ID = ids["echo"][:35] + "0"
	if err := a.Apply([]agent.ServiceConfig{entry("echo"), bad}); err == nil {
		t.Error("an entry whose id is not its identity's was taken")
	}
}
