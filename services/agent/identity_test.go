package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/identity"
	"github.com/hailsd/hail/identity/identitytest"
	"github.com/hailsd/hail/internal/testlog"
)

// With identities.secrets_dir each service the agent registers connects
// as its own identity (PROTOCOL v1.6), its seed in
// data_dir/identities/<name>.seed: registered under that seed's id, and
// deregistered when the agent stops. The agent's own connection is a
// static role's (here the router's, which may read the registry).
func TestAgentServicesAsIdentities(t *testing.T) {
	r := identitytest.New(t, "greeter")
	_, kv := r.Discovery(discovery.Config{})
	router, _ := r.Dir.User(events.RoleRouter)
	file := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(file, []byte("services:\n  - {name: greeter, address: 127.0.0.1, port: 8095}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	out := &testlog.Buffer{}
	go func() {
		done <- run(ctx, []string{"--config", file, "--nats-url", r.URL, "--nats-user", router.Name, "--nats-password", router.Password,
			"--nats-inbox-prefix", router.InboxPrefix, "--identities-secrets-dir", r.Dir.Path, "--data-dir", data, "--http-addr", "", "--dns-addr", ""},
			func(string) string { return "" }, out)
	}()
	var key string
	bustest.Eventually(t, 15*time.Second, func() error {
		select {
		case err := <-done:
			t.Fatalf("agent stopped: %v\n%s", err, out)
		default:
		}
		id, err := identity.Load(filepath.Join(data, "identities", "greeter.seed"))
		if err != nil {
			return err
		}
		key = events.InstanceKey("greeter", id.ID())
		_, err = kv.Instances.Get(t.Context(), key)
		return err
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("agent: %v\n%s", err, out)
	}
	if _, err := kv.Instances.Get(t.Context(), key); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("%s after the agent stopped: %v, want it deregistered", key, err)
	}
}
