package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/testlog"
	"github.com/hailsd/hail/roles"
)

func envFrom(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// The program as the hidden tests start it: HAIL_NATS_URL pointing at a
// server they run, everything else default.
func TestRunServesThroughEnv(t *testing.T) {
	s := bustest.RunServer(t)
	nc := bustest.Connect(t, s.ClientURL())
	ctx, cancel := context.WithCancel(context.Background())
	var out testlog.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--http-addr", "127.0.0.1:0"}, envFrom(map[string]string{"HAIL_NATS_URL": s.ClientURL()}), &out)
	}()
	id := uuid.NewString()
	bustest.Eventually(t, 10*time.Second, func() error {
		m, err := nc.Request("hail.announce.echo", fmt.Appendf(nil, `{"id":%q,"service":"echo","endpoints":[{"name":"say"}]}`, id), time.Second)
		if err != nil {
			return err
		}
		var ack events.Ack
		if err := json.Unmarshal(m.Data, &ack); err != nil || !ack.OK {
			return fmt.Errorf("ack %s", m.Data)
		}
		return nil
	})
	m, err := nc.Request("hail.discovery.services", []byte("{}"), time.Second)
	if err != nil || !strings.Contains(string(m.Data), `"service":"echo"`) {
		t.Errorf("services: %s, %v", m.Data, err)
	}
	// The node registered itself in hail_nodes once serving.
	kv := bustest.Buckets(t, nc)
	keys, err := kv.Nodes.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range keys.Keys() {
		n++
	}
	if n != 1 {
		t.Errorf("%d entries in hail_nodes, want 1", n)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v\n%s", err, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if !strings.Contains(out.String(), "discovery node serving") {
		t.Errorf("log lacks the serving line:\n%s", out.String())
	}
}

func TestRunMetricsEndpoint(t *testing.T) {
	s := bustest.RunServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out testlog.Buffer
	addr := fmt.Sprintf("127.0.0.1:%d", bustest.FreePort(t))
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--nats-url", s.ClientURL(), "--http-addr", addr}, envFrom(nil), &out)
	}()
	bustest.Eventually(t, 10*time.Second, func() error {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	nc := bustest.Connect(t, s.ClientURL())
	nc.Publish("hail.announce.echo", []byte("{oops"))
	bustest.Eventually(t, 5*time.Second, func() error {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for _, want := range []string{`hail_discovery_rejected_total{reason="malformed"} 1`, "hail_discovery_ready 1", "process_cpu_seconds_total"} {
			if !strings.Contains(string(body), want) {
				return fmt.Errorf("metrics lack %q", want)
			}
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// The console behind tokens, the probes and /metrics open.
func TestConsoleNeedsAToken(t *testing.T) {
	s := bustest.RunServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("read "+roles.HashToken("let-me-read")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", bustest.FreePort(t))
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--nats-url", s.ClientURL(), "--http-addr", addr}, envFrom(map[string]string{"HAIL_CONSOLE_TOKENS_FILE": tokens}), io.Discard)
	}()
	get := func(path, token string) int {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	bustest.Eventually(t, 10*time.Second, func() error {
		if c := get("/readyz", ""); c != 200 {
			return fmt.Errorf("readyz %d", c)
		}
		return nil
	})
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/api/services", "", http.StatusUnauthorized},
		{"/api/services", "wrong", http.StatusUnauthorized},
		{"/api/services", "let-me-read", http.StatusOK},
		{"/metrics", "", http.StatusOK},
		{"/healthz", "", http.StatusOK},
	} {
		if c := get(tc.path, tc.token); c != tc.want {
			t.Errorf("GET %s with token %q: %d, want %d", tc.path, tc.token, c, tc.want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestHashToken(t *testing.T) {
	var out bytes.Buffer
	if err := hashToken(strings.NewReader("s3cret\n"), &out); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out.String()); got != roles.HashToken("s3cret") {
		t.Fatalf("hash-token printed %q", got)
	}
	if err := hashToken(strings.NewReader(""), &out); err == nil {
		t.Fatal("hash-token of nothing: no error")
	}
}

func TestConfigErrorsNameField(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--heartbeat-interval", "1s", "--heartbeat-timeout", "2s"}, nil, "heartbeat.timeout"},
		{nil, map[string]string{"HAIL_HEARTBEAT_INTERVAL": "often"}, "heartbeat.interval"},
		{[]string{"--prefix", "hail.*"}, nil, "prefix"},
		{[]string{"--node-id", "node-1"}, nil, "node.id"},
		{[]string{"--log-level", "chatty"}, nil, "log.level"},
		{[]string{"--http-addr", "0.0.0.0:8081"}, nil, "console.tokens_file"},
		{nil, map[string]string{"HAIL_CONSOLE_NATS_PASSWORD": "pw"}, "console.nats.user"},
		{[]string{"--dns-addr", ""}, map[string]string{"HAIL_CONSUL_ENABLED": "true"}, "consul.enabled"},
		{[]string{"--dns-ttl", "48h"}, map[string]string{"HAIL_CONSUL_ENABLED": "true"}, "dns.ttl"},
		{[]string{"--region", "EU"}, nil, "region"},
		{nil, map[string]string{"HAIL_REMOTE_REGIONS": "us.east"}, "remote_regions"},
		{[]string{"--remote-stale", "0s"}, nil, "remote_stale"},
	}
	for _, tt := range tests {
		err := run(context.Background(), tt.args, envFrom(tt.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run(%v, %v) = %v, want an error naming %s", tt.args, tt.env, err, tt.want)
		}
	}
}

func TestPrintConfig(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--print-config", "--heartbeat-interval", "2s"}, envFrom(map[string]string{"HAIL_NATS_URL": "nats://n:4222"}), &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"interval: 2s", "url: nats://n:4222", "deregister_after: 1m0s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("printed config lacks %q:\n%s", want, out.String())
		}
	}
}

// Beyond loopback the console needs tokens, or --insecure said out loud.
func TestConsoleBeyondLoopbackNeedsTokensOrInsecure(t *testing.T) {
	for _, tc := range []struct {
		name     string
		tokens   string
		insecure bool
		ok       bool
	}{
		{"neither", "", false, false},
		{"tokens", "/etc/hail/tokens", false, true},
		{"insecure", "", true, true},
	} {
		c := defaults()
		c.HTTP.Addr, c.Console.TokensFile, c.Insecure = "0.0.0.0:8081", tc.tokens, tc.insecure
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}
