package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/hailsd/hail/bus/bustest"
)

// The agent serves Consul's HTTP read API beside its own, and DNS: the
// service of its config is found through both, from the registry.
func TestAgentServesConsulInterfaces(t *testing.T) {
	r := region(t)
	file := filepath.Join(t.TempDir(), "agent.yaml")
	writeConfig(t, file, "services:\n  - name: web\n    address: 127.0.0.7\n    port: 8080\n    tags: [v2]\n")
	httpAddr := fmt.Sprintf("127.0.0.1:%d", bustest.FreePort(t))
	dnsAddr := fmt.Sprintf("127.0.0.1:%d", bustest.FreePort(t))
	stop := runAgent(t, "--config", file, "--nats-url", r.URL, "--http-addr", httpAddr, "--dns-addr", dnsAddr, "--heartbeat-interval", "200ms")
	defer stop()
	bustest.Eventually(t, 15*time.Second, func() error {
		resp, err := http.Get("http://" + httpAddr + "/v1/health/service/web?passing&tag=v2")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var entries []struct{ Service struct{ Address string } }
		if err := json.Unmarshal(body, &entries); err != nil || len(entries) != 1 || entries[0].Service.Address != "127.0.0.7" {
			return fmt.Errorf("health/service/web: %d %s", resp.StatusCode, body)
		}
		return nil
	})
	resp, err := http.Get("http://" + httpAddr + "/v1/checks")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("the agent's own API beside Consul's: %v %v", resp, err)
	}
	resp.Body.Close()
	for _, network := range []string{"udp", "tcp"} {
		m := new(dns.Msg).SetQuestion("web.service.hail.", dns.TypeA)
		in, _, err := (&dns.Client{Net: network, Timeout: 5 * time.Second}).Exchange(m, dnsAddr)
		if err != nil || len(in.Answer) != 1 || in.Answer[0].(*dns.A).A.String() != "127.0.0.7" {
			t.Errorf("dns %s: %v %v", network, in, err)
		}
	}
}
