package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/regiontest"
)

// The agent binary with a config file of two services: both registered
// with their checks; SIGTERM deregisters both before it exits.
func TestAgentBinarySIGTERMDeregisters(t *testing.T) {
	r := regiontest.New(t)
	r.StartNode(discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 200 * time.Millisecond, Timeout: 100 * time.Millisecond}}})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer app.Close()
	host, port, _ := net.SplitHostPort(app.Listener.Addr().String())
	file := filepath.Join(t.TempDir(), "agent.yaml")
	cfg := fmt.Sprintf(`services:
  - name: web
    address: %[1]s
    port: %[2]s
    checks:
      - {name: health, http: "%[3]s/health", interval: 200ms}
  - name: db
    address: %[1]s
    port: %[2]s
    checks:
      - {name: port, tcp: "%[1]s:%[2]s", interval: 200ms}
`, host, port, app.URL)
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	evs := make(chan events.HealthEvent, 100)
	sub, err := r.NC.Subscribe("hail.health.>", func(m *nats.Msg) {
		var ev events.HealthEvent
		if json.Unmarshal(m.Data, &ev) == nil {
			evs <- ev
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	_ = r.NC.Flush()
	p := start(t, "agent", "agent", map[string]string{"HAIL_NATS_URL": r.URL, "HAIL_HTTP_ADDR": fmt.Sprintf("127.0.0.1:%d", bustest.FreePort(t)), "HAIL_HEARTBEAT_INTERVAL": "200ms", "HAIL_DNS_ADDR": "127.0.0.1:0", "HAIL_DATA_DIR": t.TempDir()}, "--config", file)
	bustest.Eventually(t, 10*time.Second, func() error {
		if n := len(r.Instances()); n != 2 {
			return fmt.Errorf("%d instances registered, want 2", n)
		}
		return nil
	})
	p.Stop(t) // SIGTERM; fails the test unless it exits cleanly
	gone := map[string]bool{}
	deadline := time.After(5 * time.Second)
	for len(gone) < 2 {
		select {
		case ev := <-evs:
			if ev.Status == events.Deregistered {
				gone[ev.Service] = true
			}
		case <-deadline:
			t.Fatalf("deregistered after SIGTERM: %v", gone)
		}
	}
	if n := len(r.Instances()); n != 0 {
		t.Errorf("%d records left after SIGTERM", n)
	}
}
