package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/identity"
	"github.com/hailsd/hail/identity/identitytest"
)

// With identity.secret_file the instance connects as its own identity
// (PROTOCOL v1.6) and is registered under the identity's id; with
// identity.seed_file it keeps that id when it starts again.
func TestRunAsIdentity(t *testing.T) {
	r := identitytest.New(t, "echo")
	_, kv := r.Discovery(discovery.Config{})
	seed := filepath.Join(t.TempDir(), "echo.seed")
	env := map[string]string{"HAIL_NATS_URL": r.URL}
	args := []string{"--identity-secret-file", r.SecretFile("echo"), "--identity-seed-file", seed}
	start := func() (stop func() error) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- run(ctx, args, func(k string) string { return env[k] }, io.Discard) }()
		return func() error { cancel(); return <-done }
	}
	stop := start()
	var id string
	bustest.Eventually(t, 15*time.Second, func() error {
		loaded, err := identity.Load(seed)
		if err != nil {
			return err
		}
		id = loaded.ID()
		_, err = kv.Instances.Get(t.Context(), events.InstanceKey("echo", id))
		return err
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Deregistered as it left; registered again under the same id.
	if _, err := kv.Instances.Get(t.Context(), events.InstanceKey("echo", id)); err == nil {
		t.Error("still registered after it left")
	}
	stop = start()
	defer stop()
	bustest.Eventually(t, 15*time.Second, func() error {
		e, err := kv.Instances.Get(t.Context(), events.InstanceKey("echo", id))
		if err != nil {
			return fmt.Errorf("not registered again as %s: %w", id, err)
		}
		rec, err := events.DecodeInstanceRecord(e.Value())
		if err != nil || !rec.Scoped {
			return fmt.Errorf("record %+v %v, want scoped", rec, err)
		}
		return nil
	})
}

func TestIdentityConfigRefused(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"seed without secret", []string{"--identity-seed-file", "x.seed"}, "identity.seed_file"},
		{"secret with a nats user", []string{"--identity-secret-file", "x.secret", "--nats-user", "svc-echo"}, "identity.secret_file"},
		{"secret file missing", []string{"--identity-secret-file", filepath.Join(t.TempDir(), "none.secret")}, "identity.secret_file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			err := run(ctx, c.args, func(string) string { return "" }, io.Discard)
			if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("run %v: %v, want an error naming %s", c.args, err, c.want)
			}
		})
	}
}
