package discovery

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/swarm"
)

// 2,000 clients that follow PROTOCOL v1 alone (swarm's V1 mode: no
// backoff, no spread, announce again after 3 intervals without a
// heartbeat) register at once against one node: each is heartbeated
// within an interval of its registration (welcome), so fewer of them
// announce again than there are instances, and none is judged critical
// while the burst lasts or in the four rounds after it.
func TestV1BurstHeartbeatedWithinAnInterval(t *testing.T) {
	instances := 2000
	if raceEnabled {
		// The swarm, the server and the node share this process and its
		// two cores: under the race detector 2,000 answer too late.
		instances = 400
	}
	n, nc := runningNode(t, Config{})
	interval := n.interval()
	url := nc.ConnectedUrl()

	// When each instance was registered (its health event) and first
	// heartbeated, as the test's own connection hears them.
	var mu sync.Mutex
	registeredAt, beatAt := map[string]time.Time{}, map[string]time.Time{}
	var critical []string
	health, err := nc.Subscribe(events.Subjects{}.HealthAll(), func(m *nats.Msg) {
		ev, err := events.DecodeHealthEvent(m.Data)
		if err != nil {
			t.Errorf("health event: %v", err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		switch ev.Status {
		case events.Passing:
			if _, ok := registeredAt[ev.ID]; !ok {
				registeredAt[ev.ID] = time.Now()
			}
		case events.Critical, events.Deregistered:
			critical = append(critical, ev.ID+" "+string(ev.Status)+": "+ev.Reason)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	beats, err := nc.Subscribe(events.Subjects{}.Heartbeat(">"), func(m *nats.Msg) {
		id := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
		mu.Lock()
		defer mu.Unlock()
		if _, ok := beatAt[id]; !ok {
			beatAt[id] = time.Now()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []*nats.Subscription{health, beats} {
		if err := sub.SetPendingLimits(-1, -1); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	set := metrics.NewSet()
	conns := make([]*nats.Conn, 4)
	for i := range conns {
		conns[i] = bustest.Connect(t, url)
	}
	sw, err := swarm.New(conns, swarm.Config{Instances: instances, Services: 20, Name: "v1", HeartbeatInterval: interval, V1: true, Metrics: set})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sw.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("swarm: %v", err)
		}
	})
	bustest.Eventually(t, 60*time.Second, func() error {
		if r := sw.Registered(); r < instances {
			return fmt.Errorf("%d of %d registered", r, instances)
		}
		return nil
	})
	// Four whole rounds after the last registration.
	sent := n.m.heartbeats.Get()
	bustest.Eventually(t, 30*time.Second, func() error {
		if got := n.m.heartbeats.Get() - sent; got < uint64(4*instances) {
			return fmt.Errorf("%d heartbeats since all registered, want four rounds", got)
		}
		return nil
	})

	mu.Lock()
	defer mu.Unlock()
	if len(critical) > 0 {
		t.Errorf("%d false critical or deregistered, first: %s", len(critical), critical[0])
	}
	var worst time.Duration
	var worstID string
	for id, at := range registeredAt {
		beat, ok := beatAt[id]
		if !ok {
			t.Errorf("instance %s registered, never heartbeated", id)
			continue
		}
		if gap := beat.Sub(at); gap > worst {
			worst, worstID = gap, id
		}
	}
	if len(registeredAt) != instances {
		t.Errorf("%d registered events, want %d", len(registeredAt), instances)
	}
	// Within an interval, with room: the welcome heartbeat goes out at
	// once, where the next round alone takes up to an interval (950 ms
	// measured without it).
	if worst > interval/2 {
		t.Errorf("instance %s first heartbeated %v after its registration, want within half the interval %v", worstID, worst, interval)
	}
	unheard := set.GetOrCreateCounter(`hail_swarm_announces_due_total{why="unheard"}`).Get()
	if unheard >= uint64(instances) {
		t.Errorf("%d announces again for want of a heartbeat, want fewer than the %d instances", unheard, instances)
	}
	t.Logf("%d instances: worst registration to first heartbeat %v; %d announced again unheard; %d welcome heartbeats",
		instances, worst, unheard, n.regs.adm.welcomed.Get())
}
