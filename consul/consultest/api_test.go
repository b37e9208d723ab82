package consultest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/consulenv"
)

// client is a consul/api client of env's HTTP API, as CONSUL_HTTP_ADDR
// would make it.
func client(t *testing.T, e *consulenv.Env) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: strings.TrimPrefix(e.HTTP, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The client of this project's seeds, client.Catalog().Service, and the
// health and agent reads see the registry with the contract's fields.
func TestConsulAPIClient(t *testing.T) {
	e := consulenv.Start(t, consulenv.Options{})
	a := e.Record("my-service", func(r *events.InstanceRecord) {
		r.Hostname, r.Tags, r.Weight, r.AZ = "host-a", []string{"v2"}, 7, "az1"
		r.Metadata = map[string]string{"team": "blue"}
		r.Checks = []events.CheckResult{{Name: "health", Kind: events.CheckHTTP, Status: events.Passing, Output: "200 OK"}}
	})
	b := e.Record("my-service", func(r *events.InstanceRecord) { r.Status = events.Critical })
	e.Put(a)
	e.Put(b)
	c := client(t, e)

	svcs, meta, err := c.Catalog().Service("my-service", "", nil)
	if err != nil || len(svcs) != 2 || meta.LastIndex == 0 || !meta.KnownLeader {
		t.Fatalf("Catalog().Service: %v %+v %v", svcs, meta, err)
	}
	i := slices.IndexFunc(svcs, func(s *api.CatalogService) bool { return s.ServiceID == a.ID })
	if i < 0 {
		t.Fatalf("no %s in %+v", a.ID, svcs)
	}
	got := svcs[i]
	if got.Node != "host-a" || got.Datacenter != consulenv.Datacenter || got.ServiceName != "my-service" || got.ServiceAddress != a.Address ||
		got.ServicePort != 8080 || !slices.Equal(got.ServiceTags, []string{"v2"}) || got.ServiceMeta["team"] != "blue" ||
		got.ServiceMeta["hail_az"] != "az1" || got.ServiceMeta["hail_weight"] != "7" || got.ServiceWeights != (api.Weights{Passing: 7, Warning: 1}) {
		t.Errorf("catalog entry %+v", got)
	}
	if tagged, _, err := c.Catalog().Service("my-service", "v2", nil); err != nil || len(tagged) != 1 {
		t.Errorf("Catalog().Service tag v2: %v %v", tagged, err)
	}
	all, _, err := c.Catalog().Services(nil)
	if err != nil || !slices.Equal(all["my-service"], []string{"v2"}) {
		t.Errorf("Catalog().Services: %v %v", all, err)
	}

	entries, _, err := c.Health().Service("my-service", "", true, nil)
	if err != nil || len(entries) != 1 || entries[0].Service.ID != a.ID {
		t.Fatalf("Health().Service passing: %v %v", entries, err)
	}
	if st := entries[0].Checks.AggregatedStatus(); st != api.HealthPassing {
		t.Errorf("aggregated status %s", st)
	}
	ids := []string{}
	for _, ch := range entries[0].Checks {
		ids = append(ids, ch.CheckID)
	}
	if want := []string{"hail", "service:" + a.ID + ":health"}; !slices.Equal(ids, want) {
		t.Errorf("check ids %v, want %v", ids, want)
	}
	entries, _, err = c.Health().Service("my-service", "", false, nil)
	if err != nil || len(entries) != 2 {
		t.Fatalf("Health().Service: %v %v", entries, err)
	}
	checks, _, err := c.Health().Checks("my-service", nil)
	if err != nil || len(checks) != 3 {
		t.Errorf("Health().Checks: %v %v", checks, err)
	}
	self, err := c.Agent().Self()
	if err != nil || self["Config"]["Datacenter"] != consulenv.Datacenter {
		t.Errorf("Agent().Self: %v %v", self, err)
	}
	if leader, err := c.Status().Leader(); err != nil || leader == "" {
		t.Errorf("Status().Leader: %q %v", leader, err)
	}

	// Not a service, another datacenter, not served: errors, never a 500
	// but for the datacenter (Consul's own answer).
	for name, call := range map[string]func() error{
		"unknown service": func() error { _, _, err := c.Health().Service("nope", "", false, nil); return err },
		"other dc":        func() error { _, _, err := c.Catalog().Services(&api.QueryOptions{Datacenter: "dc9"}); return err },
		"kv":              func() error { _, _, err := c.KV().Get("key", nil); return err },
	} {
		err := call()
		var se api.StatusError
		if name == "kv" {
			// The client reads a KV 404 as "no such key".
			continue
		}
		if !errors.As(err, &se) {
			t.Errorf("%s: %v, want a status error", name, err)
			continue
		}
		if want := map[string]int{"unknown service": 404, "other dc": 500}[name]; se.Code != want {
			t.Errorf("%s: %d, want %d", name, se.Code, want)
		}
	}
}

// A blocking Health().Service returns when its own service changes, with
// a higher index, and not when another service does.
func TestConsulAPIBlockingQuery(t *testing.T) {
	e := consulenv.Start(t, consulenv.Options{})
	web, other := e.Record("web", nil), e.Record("other", nil)
	e.Put(web)
	e.Put(other)
	c := client(t, e)
	_, meta, err := c.Health().Service("web", "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		entries []*api.ServiceEntry
		index   uint64
		err     error
	}
	done := make(chan result, 1)
	go func() {
		entries, m, err := c.Health().Service("web", "", false, &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 5 * time.Minute})
		if err != nil {
			done <- result{err: err}
			return
		}
		done <- result{entries, m.LastIndex, nil}
	}()
	blocked := e.Set.GetOrCreateGauge("hail_consul_blocking_queries", nil)
	waitBlocked := func(n float64) {
		bustest.Eventually(t, 10*time.Second, func() error {
			if got := blocked.Get(); got != n {
				return fmt.Errorf("%v blocked, want %v", got, n)
			}
			return nil
		})
	}
	waitBlocked(1)
	other.Status = events.Critical
	e.Put(other)
	e.Put(e.Record("other", nil))
	select {
	case r := <-done:
		t.Fatalf("woken by another service's changes: %+v", r)
	default:
	}
	waitBlocked(1)
	web.Status = events.Critical
	rev := e.Put(web)
	select {
	case r := <-done:
		if r.err != nil || r.index != rev || len(r.entries) != 1 || r.entries[0].Checks.AggregatedStatus() != api.HealthCritical {
			t.Errorf("woken query: %+v (want index %d, critical)", r, rev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the blocking query was not woken by its own service's change")
	}
}
