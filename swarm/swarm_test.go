package swarm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/router"
	"github.com/hailsd/hail/swarm"
)

// A swarm registers every instance with a real discovery node, its
// instances answer routed requests, the silent ones go critical once
// silenced and passing once they answer again, and stopping it
// deregisters them all: in both modes.
func TestSwarmAgainstARegion(t *testing.T) {
	for _, mode := range []struct {
		name string
		v1   bool
	}{{"sdk", false}, {"v1", true}} {
		t.Run(mode.name, func(t *testing.T) { swarmAgainstARegion(t, mode.v1) })
	}
}

func swarmAgainstARegion(t *testing.T, v1 bool) {
	url := bustest.RunServer(t).ClientURL()
	dnc := bustest.Connect(t, url)
	node, err := discovery.New(dnc, bustest.Buckets(t, dnc), discovery.Config{
		Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 200 * time.Millisecond, Timeout: 100 * time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	run(t, node.Run)
	rt, err := router.New(bustest.Connect(t, url), router.Config{StatsInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	run(t, rt.Run)
	conns := []*nats.Conn{bustest.Connect(t, url), bustest.Connect(t, url)}
	s, err := swarm.New(conns, swarm.Config{Instances: 60, Services: 6, Silent: 5, Name: "swarm", HeartbeatInterval: 200 * time.Millisecond, Deregister: true, V1: v1})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, s.Run)
	caller := bustest.Connect(t, url)
	count := func(service string, status events.Status) (int, error) {
		m, err := caller.Request(events.Subjects{}.DiscoveryInstances(), fmt.Appendf(nil, `{"service_prefix":%q}`, service), 2*time.Second)
		if err != nil {
			return 0, err
		}
		var recs []events.InstanceRecord
		if err := json.Unmarshal(m.Data, &recs); err != nil {
			return 0, fmt.Errorf("%s: %w", m.Data, err)
		}
		n := 0
		for _, r := range recs {
			if status == "" || r.Status == status {
				n++
			}
		}
		return n, nil
	}
	bustest.Eventually(t, 10*time.Second, func() error {
		if n, err := count("swarm", events.Passing); err != nil || n != 65 || s.Registered() != 65 {
			return fmt.Errorf("%d passing (%v), %d acknowledged; want 65", n, err, s.Registered())
		}
		return nil
	})
	bustest.Eventually(t, 5*time.Second, func() error {
		m, err := caller.Request(events.Subjects{}.Route("swarm-3", "say"), []byte("hi"), time.Second)
		if err != nil {
			return err
		}
		if string(m.Data) != "hi" {
			return fmt.Errorf("routed answer %q", m.Data)
		}
		return nil
	})
	if ids := s.Silence(2); len(ids) != 2 {
		t.Fatalf("Silence(2) silenced %v, want 2", ids)
	}
	bustest.Eventually(t, 5*time.Second, func() error {
		if n, err := count("swarm-silent", events.Critical); err != nil || n != 2 {
			return fmt.Errorf("%d silent instances critical (%v), want 2", n, err)
		}
		return nil
	})
	if ids := s.Silence(0); len(ids) != 3 {
		t.Fatalf("Silence(0) silenced %v, want the other 3", ids)
	}
	bustest.Eventually(t, 5*time.Second, func() error {
		if n, err := count("swarm-silent", events.Critical); err != nil || n != 5 {
			return fmt.Errorf("%d silent instances critical (%v), want 5", n, err)
		}
		return nil
	})
	if n, _ := count("swarm-", events.Critical); n != 5 {
		t.Errorf("%d critical in all, want only the 5 silent", n)
	}
	s.Unsilence()
	bustest.Eventually(t, 5*time.Second, func() error {
		if n, err := count("swarm", events.Passing); err != nil || n != 65 {
			return fmt.Errorf("%d passing after Unsilence (%v), want 65", n, err)
		}
		return nil
	})
	stop()
	bustest.Eventually(t, 5*time.Second, func() error {
		if n, err := count("swarm", ""); err != nil || n != 0 {
			return fmt.Errorf("%d still registered (%v)", n, err)
		}
		return nil
	})
}

func run(t *testing.T, f func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}
