package discovery_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/bus/embedded"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/nats-io/nats.go"
)

// The NATS server restarts (same store) while the node and its instances
// are connected to it. The node's rounds during the outage are void: no
// instance goes critical because the node could not reach anyone.
func TestServerRestartDoesNotFlap(t *testing.T) {
	opts := embedded.ServerOptions{Name: "restart", Port: bustest.FreePort(t), StoreDir: t.TempDir()}
	s, err := embedded.StartServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown() })
	url := s.ClientURL()
	nc := bustest.Connect(t, url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	e := envOn(t, url, nc)
	var cfg discovery.Config
	cfg.Heartbeat.Interval, cfg.Heartbeat.Timeout = 100*time.Millisecond, 50*time.Millisecond
	cfg.Metrics = newMetricsSet()
	e.StartNode(cfg)
	var fs []*fakeinst.Instance
	for range 3 {
		f := e.fake("echo")
		e.mustAnnounce(f)
		fs = append(fs, f)
	}

	s.Shutdown()
	s.WaitForShutdown()
	// At least four void rounds: more than enough misses to go critical
	// had they been judged.
	bustest.Eventually(t, 10*time.Second, func() error {
		if v := counter(cfg.Metrics, "hail_discovery_heartbeats_void_total"); v < 4*3 {
			return fmt.Errorf("%v void results", v)
		}
		return nil
	})
	if s, err = embedded.StartServer(opts); err != nil {
		t.Fatal(err)
	}
	beats := fs[0].Beats()
	bustest.Eventually(t, 10*time.Second, func() error {
		if fs[0].Beats() < beats+5 {
			return errors.New("waiting for five rounds after the restart")
		}
		return nil
	})
	if text := metricsText(cfg.Metrics); !strings.Contains(text, "hail_discovery_transitions_total{status=\"critical\"} 0\n") {
		t.Errorf("instances went critical over the node's own outage:\n%s", text)
	}
	for _, f := range fs {
		e.waitStatus(events.InstanceKey("echo", f.ID), events.Passing, time.Second)
	}
}
