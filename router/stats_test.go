package router_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/internal/regiontest"
	"github.com/hailsd/hail/router"
)

// A router publishes its traffic every interval: routed calls per
// service and attempts per instance, with latencies; and empty snapshots
// when idle.
func TestRouterPublishesTraffic(t *testing.T) {
	r := regiontest.New(t)
	r.StartNode(discovery.Config{})
	r.StartRouter(router.Config{StatsInterval: 100 * time.Millisecond})
	a := fakeinst.Start(t, r.URL, fakeinst.Options{Service: "echo"})
	b := fakeinst.Start(t, r.URL, fakeinst.Options{Service: "echo"})
	var mu sync.Mutex
	calls := events.Traffic{}
	perInstance := map[string]int64{}
	snapshots := 0
	sub, err := r.NC.Subscribe("hail.stats.router.*", func(m *nats.Msg) {
		var s events.RouterStats
		if err := json.Unmarshal(m.Data, &s); err != nil || s.Validate() != nil {
			t.Errorf("snapshot %s: %v", m.Data, err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		snapshots++
		for _, svc := range s.Services { // totals: the latest snapshot has them all
			if svc.Service == "echo" {
				calls = svc.Calls
				for id, tr := range svc.Instances {
					perInstance[id] = tr.Requests
				}
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	// Routed, not refused: an error reply (a 404 before the service is
	// in the table) is a reply too.
	routed := func(timeout time.Duration) error {
		m, err := r.NC.Request("hail.route.echo.say", []byte("hi"), timeout)
		if err != nil {
			return err
		}
		if code := m.Header.Get("Nats-Service-Error-Code"); code != "" {
			return fmt.Errorf("routing refused: %s %s", code, m.Header.Get("Nats-Service-Error"))
		}
		return nil
	}
	bustest.Eventually(t, 10*time.Second, func() error { return routed(time.Second) })
	const n = 100
	for range n {
		if err := routed(2 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	bustest.Eventually(t, 5*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if calls.Requests < n || perInstance[a.ID]+perInstance[b.ID] < n || perInstance[a.ID] == 0 || perInstance[b.ID] == 0 {
			return fmt.Errorf("counted %d calls, instances %v", calls.Requests, perInstance)
		}
		if snapshots < 2 {
			return fmt.Errorf("%d snapshots; the idle ones come too", snapshots)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if calls.Errors != 0 || calls.Quantile(0.5) <= 0 || calls.Quantile(0.99) < calls.Quantile(0.5) {
		t.Errorf("calls %+v: p50 %v p99 %v", calls, calls.Quantile(0.5), calls.Quantile(0.99))
	}
}

// A router.Client that opts in publishes its traffic like a router.
func TestClientPublishesTraffic(t *testing.T) {
	r := regiontest.New(t)
	r.StartNode(discovery.Config{})
	fakeinst.Start(t, r.URL, fakeinst.Options{Service: "echo"})
	c, err := router.NewClient(t.Context(), r.Connect(), router.TableConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan events.RouterStats, 100)
	sub, err := r.NC.Subscribe("hail.stats.router.*", func(m *nats.Msg) {
		var s events.RouterStats
		if json.Unmarshal(m.Data, &s) == nil {
			got <- s
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	r.Run("client stats", func(ctx context.Context) error { c.PublishStats(ctx, 100*time.Millisecond); return nil })
	bustest.Eventually(t, 10*time.Second, func() error {
		_, err := c.Request(t.Context(), "echo", "say", []byte("hi"))
		return err
	})
	deadline := time.After(5 * time.Second)
	for {
		select {
		case s := <-got:
			for _, svc := range s.Services {
				if svc.Service == "echo" && svc.Calls.Requests > 0 {
					return
				}
			}
		case <-deadline:
			t.Fatal("no snapshot with the client's traffic")
		}
	}
}
