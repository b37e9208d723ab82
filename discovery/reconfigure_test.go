package discovery_test

import (
	"testing"
	"time"

	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
)

// A running node takes up a new heartbeat timeout and thresholds from the
// next round (what an edited config file asks for), and refuses an invalid
// timing, keeping the one in force.
func TestReconfigureTakesEffect(t *testing.T) {
	e := newEnv(t)
	generous := discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 500 * time.Millisecond, Timeout: 400 * time.Millisecond, MissedToCritical: 1, AnsweredToPassing: 1},
		DeregisterAfter: time.Minute, SelfPreservation: discovery.DefaultTiming().SelfPreservation}
	n, _ := e.StartNode(discovery.Config{Timing: generous})

	// An instance that answers every heartbeat 100 ms late: in time for a
	// 400 ms timeout, never for a 30 ms one.
	f := fakeinst.Start(t, e.URL, fakeinst.Options{Service: "echo", Conn: e.NC, Manual: true, BeatDelay: 100 * time.Millisecond})
	e.mustAnnounce(f)
	key := events.InstanceKey(f.Service(), f.ID)

	impatient := generous
	impatient.Heartbeat.Timeout = 30 * time.Millisecond
	if err := n.Reconfigure(impatient); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(key, events.Critical, 10*time.Second)

	if err := n.Reconfigure(generous); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(key, events.Passing, 10*time.Second)

	broken := generous
	broken.Heartbeat.Timeout = time.Second // above the interval
	if err := n.Reconfigure(broken); err == nil {
		t.Error("a timeout above the interval was accepted")
	}
	if got := n.Timing(); got != generous {
		t.Errorf("timing in force after a refused change = %+v, want %+v", got, generous)
	}
}
