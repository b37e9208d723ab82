package discovery_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/nats-io/nats.go"
)

// A running node takes up a new heartbeat timeout and thresholds from the
// next round (what an edited config file asks for), and refuses an invalid
// timing, keeping the one in force.
func TestReconfigureTakesEffect(t *testing.T) {
	e := newEnv(t)
	generous := discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 500 * time.Millisecond, Timeout: 400 * time.Millisecond, MissedToCritical: 1, AnsweredToPassing: 1},
		DeregisterAfter: time.Minute, SelfPreservation: discovery.SelfPreservation{Share: 0.5, MinFailures: 5}}
	n, _ := e.startNode(discovery.Config{Timing: generous})

	// An instance that answers every heartbeat 100 ms late: in time for a
	// 400 ms timeout, never for a 30 ms one.
	f := &fake{id: uuid.NewString(), service: "echo"}
	if _, err := e.nc.Subscribe(subjects.Heartbeat(f.id), func(m *nats.Msg) {
		time.AfterFunc(100*time.Millisecond, func() {
			_ = m.Respond(fmt.Appendf(nil, `{"id":%q,"status":"passing","inflight":0}`, f.id))
		})
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	e.mustAnnounce(f)
	key := events.InstanceKey(f.service, f.id)

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
