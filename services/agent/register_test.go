package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/consul"
	"github.com/hailsd/hail/internal/testlog"
)

// runAgent runs the agent with args until stop, which fails the test if
// the agent ends in an error.
func runAgent(t *testing.T, args ...string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, func(string) string { return "" }, &testlog.Buffer{}) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
}

// Consul's registration API on the agent: a non-UUID ID becomes its
// UUIDv5 instance id and stays the ServiceID; TTL reports by CheckID;
// scripts refused; a config service's name 409; too large 413; the
// registration survives a restart with the same id; deregister removes it.
func TestAgentConsulRegistration(t *testing.T) {
	r := region(t)
	file := filepath.Join(t.TempDir(), "agent.yaml")
	writeConfig(t, file, "services:\n  - name: fixed\n    address: 127.0.0.1\n")
	dataDir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", bustest.FreePort(t))
	startRun := func() func() {
		stop := runAgent(t, "--config", file, "--nats-url", r.URL, "--http-addr", addr, "--dns-addr", "", "--data-dir", dataDir,
			"--heartbeat-interval", "200ms")
		bustest.Eventually(t, 10*time.Second, func() error {
			resp, err := http.Get("http://" + addr + "/healthz")
			if err != nil {
				return err
			}
			resp.Body.Close()
			return nil
		})
		return stop
	}
	do := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	type entry struct {
		Service struct{ ID string }
		Checks  []struct{ CheckID, Status, Output string }
	}
	health := func() []entry {
		_, body := do("GET", "/v1/health/service/web", "")
		var out []entry
		_ = json.Unmarshal([]byte(body), &out)
		return out
	}
	stop := startRun()
	for _, tc := range []struct {
		name, body string
		code       int
		says       string
	}{
		{"script", `{"Name":"web","Check":{"ScriptArgs":["/bin/true"],"Interval":"10s"}}`, 403, "Scripts are disabled on this agent"},
		{"config's name", `{"Name":"fixed","Port":1}`, 409, "config file"},
		{"too large", `{"Name":"web","Meta":{"x":"` + strings.Repeat("a", consul.MaxRegistrationBytes) + `"}}`, 413, "at most"},
		{"bad name", `{"Name":"Web Server"}`, 400, "Name"},
		{"not JSON", `{`, 400, "decode"},
	} {
		if code, body := do("PUT", "/v1/agent/service/register", tc.body); code != tc.code || !strings.Contains(body, tc.says) {
			t.Errorf("%s: %d %q, want %d saying %q", tc.name, code, body, tc.code, tc.says)
		}
	}
	reg := `{"Name":"web","ID":"web-1","Address":"127.0.0.9","Port":8080,"Tags":["v1"],"Checks":[{"CheckID":"web-ttl","Name":"ttl","TTL":"30s"}]}`
	if code, body := do("PUT", "/v1/agent/service/register", reg); code != 200 {
		t.Fatalf("register: %d %s", code, body)
	}
	if code, _ := do("PUT", "/v1/agent/service/register", `{"Name":"other","ID":"web-1"}`); code != 409 {
		t.Errorf("the same ID for another service: %d, want 409", code)
	}
	if code, body := do("PUT", "/v1/agent/check/pass/web-ttl?note=fine", ""); code != 200 {
		t.Fatalf("pass: %d %s", code, body)
	}
	bustest.Eventually(t, 15*time.Second, func() error {
		es := health()
		if len(es) != 1 || es[0].Service.ID != "web-1" || len(es[0].Checks) != 2 || es[0].Checks[1].CheckID != "web-ttl" || es[0].Checks[1].Status != "passing" {
			return fmt.Errorf("health: %+v", es)
		}
		return nil
	})
	wantID := consul.InstanceID("web-1")
	if _, body := do("GET", "/v1/catalog/service/web", ""); !strings.Contains(body, `"ID":"`+wantID+`"`) {
		t.Errorf("instance id is not UUIDv5 %s: %s", wantID, body)
	}
	_, body := do("GET", "/v1/agent/services", "")
	if !strings.Contains(body, `"web-1":`) || !strings.Contains(body, `"Service":"fixed"`) {
		t.Errorf("agent/services: %s", body)
	}
	stop()

	// Restarted: registered again from data_dir, same id.
	stop = startRun()
	defer stop()
	bustest.Eventually(t, 15*time.Second, func() error {
		if es := health(); len(es) != 1 || es[0].Service.ID != "web-1" {
			return fmt.Errorf("after restart: %+v", es)
		}
		return nil
	})
	if code, body := do("PUT", "/v1/agent/service/deregister/web-1", ""); code != 200 {
		t.Fatalf("deregister: %d %s", code, body)
	}
	if code, _ := do("PUT", "/v1/agent/service/deregister/web-1", ""); code != 404 {
		t.Errorf("deregister again: %d, want 404", code)
	}
	bustest.Eventually(t, 15*time.Second, func() error {
		if code, _ := do("GET", "/v1/health/service/web", ""); code != 404 {
			return fmt.Errorf("web still there: %d", code)
		}
		return nil
	})
}
