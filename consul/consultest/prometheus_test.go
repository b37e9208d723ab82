package consultest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/consul"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/consulenv"
)

// Prometheus's own Consul discovery (consul_sd_configs, as its server
// runs it: blocking ?stale&wait=120000ms queries, one per service) sees
// instances appear as targets and leave when they are deregistered.
func TestPrometheusConsulDiscovery(t *testing.T) {
	e := consulenv.Start(t, consulenv.Options{})
	web := e.Record("web", nil)
	e.Put(web)

	conf := consul.DefaultSDConfig
	conf.Server = strings.TrimPrefix(e.HTTP, "http://")
	// Between one answer and the next blocking query: kept short so the
	// test does not wait out Prometheus's 30 s default.
	conf.RefreshInterval = model.Duration(50 * time.Millisecond)
	refresh := discovery.NewRefreshMetrics(prometheus.NewRegistry())
	metrics := conf.NewDiscovererMetrics(prometheus.NewRegistry(), refresh)
	if err := metrics.Register(); err != nil {
		t.Fatal(err)
	}
	defer metrics.Unregister()
	d, err := consul.NewDiscovery(&conf, nil, metrics)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan []*targetgroup.Group)
	var mu sync.Mutex
	targets := map[string][]string{} // source (service) → addresses
	var wg sync.WaitGroup
	wg.Go(func() { d.Run(ctx, ch) })
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case groups := <-ch:
				mu.Lock()
				for _, g := range groups {
					var addrs []string
					for _, ls := range g.Targets {
						addrs = append(addrs, string(ls[model.AddressLabel]))
					}
					slices.Sort(addrs)
					targets[g.Source] = addrs
				}
				mu.Unlock()
			}
		}
	})
	defer func() {
		cancel()
		wg.Wait()
	}()
	want := func(service string, recs ...events.InstanceRecord) {
		t.Helper()
		var addrs []string
		for _, r := range recs {
			addrs = append(addrs, fmt.Sprintf("%s:%d", r.Address, r.Port))
		}
		slices.Sort(addrs)
		bustest.Eventually(t, 20*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if got := targets[service]; !slices.Equal(got, addrs) {
				return fmt.Errorf("%s targets %v, want %v", service, got, addrs)
			}
			return nil
		})
	}
	want("web", web)
	second := e.Record("web", nil)
	e.Put(second)
	want("web", web, second)
	api := e.Record("api", nil)
	e.Put(api)
	want("api", api)
	e.Delete(web)
	want("web", second)
	e.Delete(second)
	want("web")
	want("api", api)
	// It waits in blocking queries: on the catalog and on api.
	blocked := e.Set.GetOrCreateGauge("hail_consul_blocking_queries", nil)
	bustest.Eventually(t, 20*time.Second, func() error {
		if n := blocked.Get(); n < 2 {
			return fmt.Errorf("%v blocking queries, want the catalog's and api's", n)
		}
		return nil
	})
}
