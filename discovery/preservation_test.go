package discovery_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
)

// nodeEvents collects every node event from now on.
func (e *env) nodeEvents() <-chan events.NodeEvent {
	e.T.Helper()
	ch := make(chan events.NodeEvent, 64)
	sub, err := e.NC.Subscribe(subjects.NodeEventAll(), func(m *nats.Msg) {
		var ev events.NodeEvent
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			e.T.Errorf("node event %s: %v", m.Data, err)
			return
		}
		ch <- ev
	})
	if err != nil {
		e.T.Fatal(err)
	}
	e.T.Cleanup(func() { sub.Unsubscribe() })
	if err := e.NC.Flush(); err != nil {
		e.T.Fatal(err)
	}
	return ch
}

func waitNodeEvent(t *testing.T, ch <-chan events.NodeEvent, state string, timeout time.Duration) events.NodeEvent {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-ch:
			if ev.State == state {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s node event within %v", state, timeout)
		}
	}
}

// answeredBeats waits until every instance has had n heartbeats: registered
// at least n-1 intervals ago, and answering.
func answeredBeats(t testing.TB, insts []*fakeinst.Instance, n int64) {
	t.Helper()
	bustest.Eventually(t, 15*time.Second, func() error {
		for _, f := range insts {
			if f.Beats() < n {
				return fmt.Errorf("an instance has had %d heartbeats", f.Beats())
			}
		}
		return nil
	})
}

// realAndTen starts a real echo instance and announces ten fakes of evil,
// and waits until all eleven have had n heartbeats.
func (e *env) realAndTen(n int64) (*fakeinst.Instance, []*fakeinst.Instance) {
	e.T.Helper()
	real := fakeinst.Start(e.T, e.URL, fakeinst.Options{Service: "echo"})
	var ten []*fakeinst.Instance
	for range 10 {
		f := e.fake("evil")
		e.mustAnnounce(f)
		ten = append(ten, f)
	}
	answeredBeats(e.T, append(ten, real), n)
	return real, ten
}

// The attack of the [trust] review, with instances steady enough to count:
// ten instances answer for a while and then fall silent together, which
// puts the node into self-preservation; a real instance killed while it
// lasts was kept passing for as long as the ten stayed registered.
// Self-preservation holds a silence for max_duration at most: it ends on
// its own, and the killed instance and the ten are critical soon after.
func TestSelfPreservationEndsAtItsLimit(t *testing.T) {
	e := newEnv(t)
	const interval, limit = 200 * time.Millisecond, 2 * time.Second
	e.StartNode(discovery.Config{Timing: discovery.Timing{
		Heartbeat:       discovery.Heartbeat{Interval: interval, Timeout: interval / 2},
		DeregisterAfter: time.Hour,
		SelfPreservation: discovery.SelfPreservation{MaxDuration: limit,
			// The ten are steady once they have answered for this long.
			SteadyAfter: 2 * interval},
	}})
	nodes := e.nodeEvents()
	real, ten := e.realAndTen(5)

	for _, f := range ten {
		f.Silence()
	}
	ev := waitNodeEvent(t, nodes, events.NodeSelfPreservation, 10*time.Second)
	t.Logf("node event: %+v", ev)
	real.Kill()
	killed := time.Now()

	// The bound is the limit and the misses to critical after it; the
	// deadline is generous for a loaded machine, and far short of
	// forever.
	e.waitStatus(events.InstanceKey("echo", real.ID), events.Critical, 10*limit)
	t.Logf("the killed instance critical %v after the kill (limit %v)", time.Since(killed).Round(time.Millisecond), limit)
	ev = waitNodeEvent(t, nodes, events.NodeNormal, 10*limit)
	t.Logf("node event: %+v", ev)
	for _, f := range ten {
		e.waitStatus(events.InstanceKey("evil", f.ID), events.Critical, 10*limit)
	}
}

// The attack as it was measured: ten instances answer for a moment (well
// within steady_after of their registration) and fall silent together as
// a real instance dies. They were never steady, so they count toward
// nothing: the node does not preserve, and all eleven are critical within
// the usual three missed heartbeats, long before self-preservation's own
// limit would end it.
func TestNeverSteadyInstancesCannotPreserve(t *testing.T) {
	e := newEnv(t)
	const interval = 200 * time.Millisecond
	set := newMetricsSet()
	e.StartNode(discovery.Config{Metrics: set, Timing: discovery.Timing{
		Heartbeat:       discovery.Heartbeat{Interval: interval, Timeout: interval / 2},
		DeregisterAfter: time.Hour,
	}})
	if got := discovery.DefaultTiming().SelfPreservation; got.SteadyAfter < time.Minute || got.MaxDuration < 30*time.Second {
		t.Fatalf("defaults %+v: the test needs steady_after and max_duration far above its deadline", got)
	}
	real, ten := e.realAndTen(3)

	for _, f := range ten {
		f.Silence()
	}
	real.Kill()
	e.waitStatus(events.InstanceKey("echo", real.ID), events.Critical, 15*time.Second)
	for _, f := range ten {
		e.waitStatus(events.InstanceKey("evil", f.ID), events.Critical, 15*time.Second)
	}
	if v := counter(set, "hail_discovery_self_preservation_rounds_total"); v != 0 {
		t.Errorf("%v rounds in self-preservation", v)
	}
}
