package discovery_test

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/heartbeat"
	"github.com/hailsd/hail/internal/fakeinst"
)

// A re-announce that changes only scoped is taken: the record says
// scoped, the heartbeats go to the scoped subject, and the instance that
// answers only there stays passing.
func TestReannounceChangesScoped(t *testing.T) {
	e := newEnv(t)
	e.StartNode(discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 100 * time.Millisecond, Timeout: 80 * time.Millisecond}}})
	f := fakeinst.Start(t, e.URL, fakeinst.Options{Service: "echo", Conn: e.NC, Manual: true})
	e.mustAnnounce(f)
	key := events.InstanceKey("echo", f.ID)
	e.waitStatus(key, events.Passing, 2*time.Second)

	// From now on it answers heartbeats on the scoped subject only.
	f.Silence()
	var beats atomic.Int64
	r, err := heartbeat.Respond(e.NC, subjects, events.HeartbeatTarget("echo", f.ID, true), func() events.HeartbeatReply {
		beats.Add(1)
		return events.HeartbeatReply{Status: events.Passing}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	a := events.Announce{ID: f.ID, Service: "echo", Version: "1.0.0", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100, Scoped: true}
	m := e.request(subjects.Announce("echo"), mustJSON(t, a))
	if code, text, isErr := events.ReplyError(m); isErr {
		t.Fatalf("scoped re-announce answered %d %s", code, text)
	}
	bustest.Eventually(t, 5*time.Second, func() error {
		rec, err := e.Record(key)
		if err != nil {
			return err
		}
		if !rec.Scoped {
			return errors.New("the record still says scoped=false")
		}
		return nil
	})
	// Ten rounds answered on the scoped subject: still passing (three
	// missed on the old subject would have made it critical).
	bustest.Eventually(t, 10*time.Second, func() error {
		if n := beats.Load(); n < 10 {
			return fmt.Errorf("%d heartbeats on the scoped subject", n)
		}
		return nil
	})
	if rec, _ := e.Record(key); rec.Status != events.Passing {
		t.Errorf("status %s after the scoped re-announce", rec.Status)
	}
}
