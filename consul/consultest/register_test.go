package consultest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/hashicorp/consul/api"

	"github.com/hailsd/hail/agent"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/consul"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/internal/consulenv"
)

// startAgent runs hail's agent on env's region with Consul's
// registration API and read API on one HTTP server, as the agent program
// serves them, registrations kept in dir.
func startAgent(t *testing.T, e *consulenv.Env, dir string) (*api.Client, func()) {
	t.Helper()
	a := agent.New(e.Region.Connect(), agent.Config{HeartbeatInterval: 200 * time.Millisecond, Metrics: metrics.NewSet()})
	reg, err := consul.NewRegistrar(a, consul.RegistrarConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	stopAgent := e.Region.Run("agent", func(ctx context.Context) error { return a.Run(ctx, reg.Services(nil)) })
	mux := http.NewServeMux()
	for _, p := range []string{"/v1/agent/service/", "/v1/agent/check/", "/v1/agent/services", "/v1/agent/checks"} {
		mux.Handle(p, reg.Handler())
	}
	mux.Handle("/", consul.Handler(e.View, consul.HTTPOptions{}))
	srv := httptest.NewServer(mux)
	c, err := api.NewClient(&api.Config{Address: strings.TrimPrefix(srv.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	return c, func() {
		srv.Close()
		stopAgent()
	}
}

// Registration through the consul/api client: a non-UUID ID with an HTTP
// and a TTL check, found in health with its IDs, TTL reports, script
// checks refused, kept across a restart of the agent, deregistered.
func TestConsulAPIRegistration(t *testing.T) {
	e := consulenv.Start(t, consulenv.Options{})
	e.Region.StartNode(discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 200 * time.Millisecond, Timeout: 100 * time.Millisecond}}})
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer target.Close()
	dir := t.TempDir()
	c, stop := startAgent(t, e, dir)

	err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
		Name: "web", ID: "web-1", Address: "127.0.0.1", Port: 8080, Tags: []string{"v1"}, Meta: map[string]string{"team": "blue"},
		Checks: api.AgentServiceChecks{
			{CheckID: "web-http", Name: "http", HTTP: target.URL, Interval: "200ms"},
			{CheckID: "web-ttl", Name: "ttl", TTL: "30s"},
		},
	})
	if err != nil {
		t.Fatalf("ServiceRegister: %v", err)
	}
	err = c.Agent().ServiceRegister(&api.AgentServiceRegistration{
		Name: "job", Check: &api.AgentServiceCheck{Args: []string{"/bin/true"}, Interval: "10s"},
	})
	var se api.StatusError
	if !errors.As(err, &se) || se.Code != 403 || !strings.Contains(se.Body, "Scripts are disabled on this agent") {
		t.Errorf("a script check: %v, want 403 Scripts are disabled on this agent", err)
	}
	if err := c.Agent().UpdateTTL("web-ttl", "all good", api.HealthPassing); err != nil {
		t.Fatalf("UpdateTTL: %v", err)
	}
	passing := func() error {
		entries, _, err := c.Health().Service("web", "", true, nil)
		if err != nil {
			return err
		}
		if len(entries) != 1 {
			return fmt.Errorf("%d passing entries", len(entries))
		}
		en := entries[0]
		ids := map[string]string{}
		for _, ch := range en.Checks {
			ids[ch.CheckID] = ch.Status
		}
		if en.Service.ID != "web-1" || ids["web-http"] != api.HealthPassing || ids["web-ttl"] != api.HealthPassing || en.Service.Meta["team"] != "blue" {
			return fmt.Errorf("entry %+v, checks %v", en.Service, ids)
		}
		return nil
	}
	bustest.Eventually(t, 20*time.Second, passing)
	svcs, err := c.Agent().Services()
	if err != nil || svcs["web-1"] == nil || svcs["web-1"].Service != "web" {
		t.Errorf("Agent().Services: %v %v", svcs, err)
	}
	cat, _, err := c.Catalog().Service("web", "", nil)
	if err != nil || len(cat) != 1 || cat[0].ID != consul.InstanceID("web-1") {
		t.Errorf("instance id: %+v %v, want %s", cat, err, consul.InstanceID("web-1"))
	}
	stop()

	// The agent restarted: the registration is back with the same id.
	c, stop = startAgent(t, e, dir)
	defer stop()
	if err := c.Agent().PassTTL("web-ttl", "back"); err != nil {
		t.Fatalf("PassTTL after restart: %v", err)
	}
	bustest.Eventually(t, 20*time.Second, passing)
	if err := c.Agent().ServiceDeregister("web-1"); err != nil {
		t.Fatalf("ServiceDeregister: %v", err)
	}
	bustest.Eventually(t, 20*time.Second, func() error {
		if _, _, err := c.Health().Service("web", "", false, nil); !errors.As(err, &se) || se.Code != 404 {
			return fmt.Errorf("web after deregister: %v", err)
		}
		return nil
	})
}
