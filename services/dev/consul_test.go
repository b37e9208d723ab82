package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
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
	} else if strings.Contains(out, "echo.service") {
		t.Errorf("the welcome digs for echo, which DNS answers nothing for:\n%s", out)
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

// The welcome's Consul examples, with the greeter running, show an
// instance: the API's entry has its address and port, and the dig
// answers with it.
func TestDevConsulExamplesAnswer(t *testing.T) {
	httpAddr := fmt.Sprintf("127.0.0.1:%d", bustest.FreePort(t))
	dnsAddr := fmt.Sprintf("127.0.0.1:%d", bustest.FreePort(t))
	d := startDev(t, "--consul-addr", httpAddr, "--dns-addr", dnsAddr, "--greeter-addr", "127.0.0.1:0")
	defer d.stop(t)
	out := d.out.String()
	curl := regexp.MustCompile(`curl (http://\S+/v1/health/service/\S+)`).FindStringSubmatch(out)
	dig := regexp.MustCompile(`dig @(\S+) -p (\d+) (\S+) SRV`).FindStringSubmatch(out)
	if curl == nil || dig == nil {
		t.Fatalf("the welcome lacks the curl or the dig example:\n%s", out)
	}
	bustest.Eventually(t, 15*time.Second, func() error {
		resp, err := http.Get(curl[1])
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var entries []struct {
			Service struct {
				Address string
				Port    int
			}
		}
		if err := json.Unmarshal(body, &entries); err != nil {
			return fmt.Errorf("%s: %s: %v", curl[1], body, err)
		}
		if len(entries) == 0 || entries[0].Service.Address == "" || entries[0].Service.Port == 0 {
			return fmt.Errorf("%s answered no instance with an address: %s", curl[1], body)
		}
		return nil
	})
	bustest.Eventually(t, 15*time.Second, func() error {
		m := new(dns.Msg).SetQuestion(dns.Fqdn(dig[3]), dns.TypeSRV)
		in, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(m, dig[1]+":"+dig[2])
		if err != nil {
			return err
		}
		if len(in.Answer) == 0 {
			return fmt.Errorf("dig %s SRV answered nothing: %v", dig[3], in)
		}
		return nil
	})
}
