package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/hailsd/hail/bus/bustest"
)

// The dev stack serves Consul's read API and DNS: its echo instances are
// found through both, and it says where.
func TestDevServesConsulInterfaces(t *testing.T) {
	httpAddr := fmt.Sprintf("127.0.0.1:%d", bustest.FreePort(t))
	dnsAddr := fmt.Sprintf("127.0.0.1:%d", bustest.FreePort(t))
	d := startDev(t, "--consul-addr", httpAddr, "--dns-addr", dnsAddr, "--dns-alt-domain", "consul.")
	defer d.stop(t)
	if out := d.out.String(); !strings.Contains(out, "CONSUL_HTTP_ADDR="+httpAddr) || !strings.Contains(out, "dig @127.0.0.1") {
		t.Errorf("the welcome does not say where Consul's interfaces are:\n%s", out)
	}
	bustest.Eventually(t, 15*time.Second, func() error {
		resp, err := http.Get("http://" + httpAddr + "/v1/catalog/services")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var svcs map[string][]string
		if err := json.Unmarshal(body, &svcs); err != nil {
			return fmt.Errorf("%s: %v", body, err)
		}
		if _, ok := svcs["echo"]; !ok {
			return fmt.Errorf("no echo in %s", body)
		}
		return nil
	})
	// The echo instances speak NATS only: known, with nothing to answer.
	m := new(dns.Msg).SetQuestion("echo.service.consul.", dns.TypeA)
	in, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(m, dnsAddr)
	if err != nil || in.Rcode != dns.RcodeSuccess || len(in.Answer) != 0 {
		t.Errorf("dns echo.service.consul: %v %v", in, err)
	}
}
