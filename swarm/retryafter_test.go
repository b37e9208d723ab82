package swarm_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/swarm"
)

// In its SDK mode the swarm honours a busy node's retry_after_ms, as
// discovery's admission control writes it (events.BusyMsg): it announces
// again after it (plus up to half of it), not after its backoff, which
// with an interval of a minute would be three minutes or more. (V1 mode
// ignores it: TestV1IgnoresRetryAfterAndSpread.)
func TestSDKHonoursRetryAfter(t *testing.T) {
	const retryAfter = 300 * time.Millisecond
	url := bustest.RunServer(t).ClientURL()
	disc := bustest.Connect(t, url)
	var mu sync.Mutex
	var seen []time.Time
	if _, err := disc.Subscribe(events.Subjects{}.AnnounceAll(), func(m *nats.Msg) {
		mu.Lock()
		seen = append(seen, time.Now())
		first := len(seen) == 1
		mu.Unlock()
		if first {
			_ = m.RespondMsg(events.BusyMsg("discovery busy", retryAfter))
			return
		}
		_ = m.Respond([]byte(`{"ok":true}`))
	}); err != nil {
		t.Fatal(err)
	}
	if err := disc.Flush(); err != nil {
		t.Fatal(err)
	}
	sw, err := swarm.New([]*nats.Conn{bustest.Connect(t, url)}, swarm.Config{Instances: 1, Services: 1, Name: "sdk",
		HeartbeatInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	run(t, sw.Run)
	bustest.Eventually(t, 10*time.Second, func() error {
		if sw.Registered() != 1 {
			return fmt.Errorf("not registered yet")
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("%d announces, want the refused one and the one after retry_after_ms", len(seen))
	}
	if gap := seen[1].Sub(seen[0]); gap < retryAfter {
		t.Errorf("announced again %v after the 503, before its retry_after_ms %v", gap, retryAfter)
	}
}
