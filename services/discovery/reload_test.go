package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/internal/proctest"
	"github.com/hailsd/hail/internal/testlog"
	"github.com/nats-io/nats.go"
)

// An edit of heartbeat.interval takes effect in the running node; a broken
// edit is refused with the key named and the node keeps serving.
func TestConfigFileEditTakesEffect(t *testing.T) {
	s := bustest.RunServer(t)
	nc := bustest.Connect(t, s.ClientURL())
	path := filepath.Join(t.TempDir(), "discovery.yaml")
	bustest.ReplaceFile(t, path, "heartbeat:\n  interval: 1s\n  timeout: 500ms\n")
	var out testlog.Buffer
	proctest.Go(t, func(ctx context.Context) error {
		return run(ctx, []string{"--config", path}, envFrom(map[string]string{"HAIL_NATS_URL": s.ClientURL()}), &out)
	})

	// A raw instance that answers every heartbeat and notes when it came.
	id := uuid.NewString()
	beats := make(chan time.Time, 1000)
	sub, err := nc.Subscribe("hail.hb."+id, func(m *nats.Msg) {
		beats <- time.Now()
		_ = m.Respond(fmt.Appendf(nil, `{"id":%q,"status":"passing"}`, id))
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	announce := fmt.Appendf(nil, `{"id":%q,"service":"echo","endpoints":[{"name":"say"}]}`, id)
	bustest.Eventually(t, 10*time.Second, func() error {
		_, err := nc.Request("hail.announce.echo", announce, time.Second)
		return err
	})

	if strings.Contains(out.String(), "heartbeat round") {
		t.Fatal("debug lines logged at level info")
	}
	bustest.ReplaceFile(t, path, "heartbeat:\n  interval: 200ms\n  timeout: 100ms\nlog:\n  level: debug\n")
	bustest.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(out.String(), "timing changed") {
			return fmt.Errorf("node did not take up the new timing:\n%s", out.String())
		}
		return nil
	})
	// log.level too: the node's debug lines now show.
	bustest.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(out.String(), "heartbeat round") {
			return fmt.Errorf("no debug line after log.level: debug")
		}
		return nil
	})
	// Beats now come a fifth of a second apart; at 1 s two are never
	// closer than 0.6 s.
	var prev time.Time
	bustest.Eventually(t, 10*time.Second, func() error {
		for {
			select {
			case b := <-beats:
				if !prev.IsZero() && b.Sub(prev) < 600*time.Millisecond {
					return nil
				}
				prev = b
			default:
				return fmt.Errorf("no two heartbeats within 0.6 s yet")
			}
		}
	})

	// Broken: a timeout above the interval.
	bustest.ReplaceFile(t, path, "heartbeat:\n  interval: 200ms\n  timeout: 5s\n")
	bustest.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(out.String(), "config file edit refused") {
			return fmt.Errorf("no refusal logged")
		}
		return nil
	})
	if !strings.Contains(out.String(), "heartbeat.timeout") {
		t.Errorf("refusal does not name heartbeat.timeout:\n%s", out.String())
	}
	if _, err := nc.Request("hail.announce.echo", announce, 2*time.Second); err != nil {
		t.Errorf("node stopped serving after a broken edit: %v", err)
	}
}
