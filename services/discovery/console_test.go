package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/testlog"
	"github.com/hailsd/hail/roles"
)

// A secured discovery node with its console on, as README's Security
// recipe runs it: with the console's own user the console serves; without
// it the console says what is missing, naming the keys, and the node
// keeps serving (the console's watches are made again, never fatal).
func TestSecuredConsole(t *testing.T) {
	s := bustest.RunSecured(t, roles.Discovery(events.Subjects{}), roles.Console(events.Subjects{}))
	node := map[string]string{
		"HAIL_NATS_URL": s.ClientURL(), "HAIL_NATS_USER": "discovery", "HAIL_NATS_PASSWORD": "pw-discovery",
		"HAIL_NATS_INBOX_PREFIX": roles.Discovery(events.Subjects{}).InboxPrefix(),
	}
	withConsole := map[string]string{
		"HAIL_CONSOLE_NATS_USER": "console", "HAIL_CONSOLE_NATS_PASSWORD": "pw-console",
		"HAIL_CONSOLE_NATS_INBOX_PREFIX": roles.Console(events.Subjects{}).InboxPrefix(),
	}
	for _, tc := range []struct {
		name    string
		console map[string]string
		// serves: the console answers /api/routes; else the log names
		// the keys to set.
		serves bool
	}{
		{"console user", withConsole, true},
		{"no console user", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			for _, m := range []map[string]string{node, tc.console} {
				for k, v := range m {
					env[k] = v
				}
			}
			addr := fmt.Sprintf("127.0.0.1:%d", bustest.FreePort(t))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out testlog.Buffer
			done := make(chan error, 1)
			go func() { done <- run(ctx, []string{"--http-addr", addr}, envFrom(env), &out) }()
			get := func(path string) error {
				resp, err := http.Get("http://" + addr + path)
				if err != nil {
					return err
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("%s: %d", path, resp.StatusCode)
				}
				return nil
			}
			bustest.Eventually(t, 15*time.Second, func() error { return get("/readyz") })
			if tc.serves {
				bustest.Eventually(t, 15*time.Second, func() error { return get("/api/routes") })
			} else {
				bustest.Eventually(t, 30*time.Second, func() error {
					if !strings.Contains(out.String(), "console not ready") || !strings.Contains(out.String(), "HAIL_CONSOLE_NATS_USER") {
						return fmt.Errorf("log does not say what the console lacks:\n%s", out.String())
					}
					return nil
				})
			}
			// The node serves on, its console ready or not.
			select {
			case err := <-done:
				t.Fatalf("run returned while serving: %v\n%s", err, out.String())
			default:
			}
			if err := get("/readyz"); err != nil {
				t.Fatalf("node not ready: %v", err)
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("run: %v\n%s", err, out.String())
				}
			case <-time.After(20 * time.Second):
				t.Fatal("run did not return after cancel")
			}
		})
	}
}

// Cancelled as soon as it serves, while its console may still be
// reading the buckets, run returns at once: every goroutine is joined
// (the console once waited for the end of snapshots that a cancelled
// watch never delivers; TestRunServesThroughEnv failed so under load).
func TestRunStopsWhileStarting(t *testing.T) {
	s := bustest.RunServer(t)
	for i := range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		var out testlog.Buffer
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, []string{"--http-addr", "127.0.0.1:0"}, envFrom(map[string]string{"HAIL_NATS_URL": s.ClientURL()}), &out)
		}()
		bustest.Eventually(t, 15*time.Second, func() error {
			if !strings.Contains(out.String(), "serving HTTP") {
				return fmt.Errorf("run %d not serving", i)
			}
			return nil
		})
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run %d: %v\n%s", i, err, out.String())
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("run %d did not return after cancel", i)
		}
	}
}
