package swarm_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/swarm"
)

// A V1 instance does what PROTOCOL v1 alone says, on the wire: it
// announces again after 3 intervals however long a 503 asks it to wait,
// at once when a discover asks for a spread of a minute, and never with a
// conn. The SDK's rules would wait out the minute both times.
func TestV1IgnoresRetryAfterAndSpread(t *testing.T) {
	tests := []struct {
		name string
		// answer is the fake discovery's answer to the nth announce
		// (from 1); discover, when set, is published after the first
		// announce is answered.
		answer   func(n int) *nats.Msg
		discover bool
		interval time.Duration
		want     int // announces seen
	}{
		{"503 with retry_after_ms of a minute: again after 3 intervals", func(int) *nats.Msg {
			m := events.ErrorMsg(events.CodeUnavailable, "busy")
			m.Data = []byte(`{"ok":false,"error":"busy","code":503,"retry_after_ms":60000}`)
			return m
		}, false, 100 * time.Millisecond, 4},
		{"a discover with spread_ms of a minute: at once", func(n int) *nats.Msg {
			m := nats.NewMsg("")
			m.Data = []byte(`{"ok":true}`)
			return m
		}, true, time.Minute, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := bustest.RunServer(t).ClientURL()
			disc := bustest.Connect(t, url)
			var mu sync.Mutex
			var seen []events.Announce
			fakeDiscovery(t, disc, func(a events.Announce) *nats.Msg {
				mu.Lock()
				seen = append(seen, a)
				n := len(seen)
				mu.Unlock()
				return tt.answer(n)
			})
			sw, err := swarm.New([]*nats.Conn{bustest.Connect(t, url)}, swarm.Config{Instances: 1, Services: 1, Name: "v1",
				HeartbeatInterval: tt.interval, V1: true})
			if err != nil {
				t.Fatal(err)
			}
			run(t, sw.Run)
			announced := func(want int) func() error {
				return func() error {
					mu.Lock()
					defer mu.Unlock()
					if len(seen) < want {
						return fmt.Errorf("%d announces, want %d", len(seen), want)
					}
					return nil
				}
			}
			bustest.Eventually(t, 10*time.Second, announced(1))
			if tt.discover {
				bustest.Eventually(t, 10*time.Second, func() error {
					if sw.Registered() != 1 {
						return fmt.Errorf("the answer not heard yet")
					}
					return nil
				})
				data, _ := json.Marshal(events.Discover{SpreadMS: 60_000})
				if err := disc.Publish(events.Subjects{}.Discover(), data); err != nil {
					t.Fatal(err)
				}
			}
			bustest.Eventually(t, 10*time.Second, announced(tt.want))
			mu.Lock()
			defer mu.Unlock()
			for i, a := range seen {
				if a.Conn != nil {
					t.Errorf("announce %d carries conn %+v; v1 knows none", i, *a.Conn)
				}
			}
		})
	}
}

// With no discovery listening, the server answers a V1 announce with its
// no-responders status: the instance is not registered by it.
func TestV1NoRespondersIsNoRegistration(t *testing.T) {
	url := bustest.RunServer(t).ClientURL()
	reg := metrics.NewSet()
	sw, err := swarm.New([]*nats.Conn{bustest.Connect(t, url)}, swarm.Config{Instances: 3, Services: 1, Name: "v1",
		HeartbeatInterval: 100 * time.Millisecond, V1: true, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	run(t, sw.Run)
	unanswered := reg.GetOrCreateCounter(`hail_swarm_announces_total{outcome="unanswered"}`)
	// Two rounds of announces each, all answered by the server alone.
	bustest.Eventually(t, 10*time.Second, func() error {
		if n := unanswered.Get(); n < 6 {
			return fmt.Errorf("%d no-responders answers, want 6", n)
		}
		return nil
	})
	if r := sw.Registered(); r != 0 {
		t.Errorf("%d registered with no discovery, want 0", r)
	}
}

// A heartbeat marked queued (the node holds the announce in its
// admission queue) is answered, but does not count the instance as
// registered; an ordinary one does.
func TestQueuedBeatIsNoRegistration(t *testing.T) {
	for _, v1 := range []bool{true, false} {
		t.Run(fmt.Sprintf("v1=%t", v1), func(t *testing.T) {
			url := bustest.RunServer(t).ClientURL()
			disc := bustest.Connect(t, url)
			announces := make(chan events.Announce, 16)
			fakeDiscovery(t, disc, func(a events.Announce) *nats.Msg {
				announces <- a
				busy := events.ErrorMsg(events.CodeUnavailable, "busy")
				busy.Data = []byte(`{"ok":false,"error":"busy","code":503,"retry_after_ms":60000}`)
				return busy
			})
			sw, err := swarm.New([]*nats.Conn{bustest.Connect(t, url)}, swarm.Config{Instances: 1, Services: 1, Name: "queued",
				HeartbeatInterval: time.Minute, V1: v1})
			if err != nil {
				t.Fatal(err)
			}
			run(t, sw.Run)
			var a events.Announce
			select {
			case a = <-announces:
			case <-time.After(10 * time.Second):
				t.Fatal("no announce in 10s")
			}
			beat := func(queued bool) {
				t.Helper()
				data, _ := json.Marshal(events.Heartbeat{Node: "5b3e6a52-9d0c-4b8a-a1f2-3c4d5e6f7a8b", Queued: queued})
				if _, err := disc.Request(events.Subjects{}.HeartbeatOf(a.Service, a.ID, a.Scoped), data, 10*time.Second); err != nil {
					t.Fatalf("heartbeat (queued %t) not answered: %v", queued, err)
				}
			}
			beat(true)
			if r := sw.Registered(); r != 0 {
				t.Fatalf("%d registered after a queued heartbeat and a 503, want 0", r)
			}
			beat(false)
			if r := sw.Registered(); r != 1 {
				t.Fatalf("%d registered after an ordinary heartbeat, want 1", r)
			}
		})
	}
}

// fakeDiscovery answers every announce heard on nc with answer's reply
// to it, from the time it returns.
func fakeDiscovery(t *testing.T, nc *nats.Conn, answer func(events.Announce) *nats.Msg) {
	t.Helper()
	if _, err := nc.Subscribe(events.Subjects{}.AnnounceAll(), func(m *nats.Msg) {
		a, err := events.DecodeAnnounce(m.Data)
		if err != nil {
			t.Errorf("announce: %v", err)
			return
		}
		_ = m.RespondMsg(answer(a))
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}
