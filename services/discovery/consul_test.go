package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/miekg/dns"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/testlog"
)

// With consul.enabled a discovery node answers Consul's HTTP API on
// http.addr, beside its console, and DNS on dns.addr, from its own
// follower; without, neither.
func TestConsulInterfacesWhenEnabled(t *testing.T) {
	for _, tc := range []struct {
		name    string
		enabled bool
	}{
		{"enabled", true},
		{"off by default", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := bustest.RunServer(t)
			nc := bustest.Connect(t, s.ClientURL())
			httpAddr := fmt.Sprintf("127.0.0.1:%d", bustest.FreePort(t))
			dnsAddr := fmt.Sprintf("127.0.0.1:%d", bustest.FreePort(t))
			env := map[string]string{"HAIL_NATS_URL": s.ClientURL(), "HAIL_HTTP_ADDR": httpAddr, "HAIL_DNS_ADDR": dnsAddr}
			if tc.enabled {
				env["HAIL_CONSUL_ENABLED"] = "true"
			}
			ctx, cancel := context.WithCancel(context.Background())
			var out testlog.Buffer
			done := make(chan error, 1)
			go func() { done <- run(ctx, nil, envFrom(env), &out) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("run: %v\n%s", err, out.String())
				}
			}()
			id := uuid.NewString()
			bustest.Eventually(t, 10*time.Second, func() error {
				m, err := nc.Request("hail.announce.web", fmt.Appendf(nil, `{"id":%q,"service":"web","endpoints":[],"address":"10.1.2.3","port":8080}`, id), time.Second)
				if err != nil {
					return err
				}
				var ack events.Ack
				if err := json.Unmarshal(m.Data, &ack); err != nil || !ack.OK {
					return fmt.Errorf("ack %s", m.Data)
				}
				return nil
			})
			// The console answers either way.
			bustest.Eventually(t, 10*time.Second, func() error {
				code, body := httpGet("http://" + httpAddr + "/api/services")
				if code != 200 || !strings.Contains(body, "web") {
					return fmt.Errorf("console: %d %s", code, body)
				}
				return nil
			})
			if !tc.enabled {
				if code, body := httpGet("http://" + httpAddr + "/v1/catalog/services"); code == 200 {
					t.Errorf("Consul's API answered while off: %s", body)
				}
				c := &dns.Client{Timeout: 500 * time.Millisecond}
				if _, _, err := c.Exchange(aQuery("web.service.hail."), dnsAddr); err == nil {
					t.Error("DNS answered while off")
				}
				return
			}
			bustest.Eventually(t, 10*time.Second, func() error {
				code, body := httpGet("http://" + httpAddr + "/v1/catalog/service/web")
				if code != 200 || !strings.Contains(body, `"ServiceID":"`+id+`"`) || !strings.Contains(body, `"ServiceAddress":"10.1.2.3"`) {
					return fmt.Errorf("catalog: %d %s", code, body)
				}
				return nil
			})
			c := &dns.Client{Timeout: 2 * time.Second}
			bustest.Eventually(t, 10*time.Second, func() error {
				r, _, err := c.Exchange(aQuery("web.service.hail."), dnsAddr)
				if err != nil {
					return err
				}
				if len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), "10.1.2.3") {
					return fmt.Errorf("answer %v", r.Answer)
				}
				return nil
			})
		})
	}
}

func aQuery(name string) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	return m
}

func httpGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
