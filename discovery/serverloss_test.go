package discovery_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/internal/regiontest"
	hailmember "github.com/hailsd/hail/member"
	"github.com/hailsd/hail/swarm"
)

// criticalEvents counts the critical health events heard on nc.
type criticalEvents struct {
	mu  sync.Mutex
	evs []events.HealthEvent
}

func watchCritical(t *testing.T, nc *nats.Conn) *criticalEvents {
	t.Helper()
	c := &criticalEvents{}
	sub, err := nc.Subscribe(events.Subjects{}.HealthAll(), func(m *nats.Msg) {
		ev, err := events.DecodeHealthEvent(m.Data)
		if err == nil && ev.Status == events.Critical {
			c.mu.Lock()
			c.evs = append(c.evs, ev)
			c.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *criticalEvents) take() []events.HealthEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]events.HealthEvent(nil), c.evs...)
}

// A server of a 3-node cluster restarted while 1,500 instances, spread
// over the servers and all younger than steady_after (so self-preservation
// counts none of them), answer a discovery node on each server: the
// restarted server's clients are silent while they reconnect and its
// routes come back, and none of them may be found critical for it. The
// server is restarted at once, or (as the scale benchmark does) stopped
// until its clients are connected elsewhere and then started again; the
// one restarted leads the registry's stream, so KV writes wait for an
// election meanwhile.
func TestServerRestartWithYoungInstancesGivesNoFalseCritical(t *testing.T) {
	if testing.Short() {
		t.Skip("1,500 instances on a 3-node cluster")
	}
	for _, tt := range []struct {
		name string
		// away: the server stays down until every client is connected
		// elsewhere and the records name their new connections.
		away bool
	}{
		{"at once", false},
		{"stopped until its clients are elsewhere", true},
	} {
		t.Run(tt.name, func(t *testing.T) { serverRestart(t, 1500, tt.away) })
	}
}

func serverRestart(t *testing.T, n int, away bool) {
	r := newRegion(t, discovery.Config{})
	for i := range 3 {
		r.start(i, "")
	}
	if sa := r.nodes[0].n.Timing().SelfPreservation.SteadyAfter; sa < time.Minute {
		t.Fatalf("steady_after %v: the instances must stay younger than it for the whole test", sa)
	}
	var conns []*nats.Conn
	for i := range 6 {
		conns = append(conns, bustest.Connect(t, r.c.ClientURL(i%3), nats.DontRandomize(), nats.MaxReconnects(-1), nats.CustomReconnectDelay(bus.Backoff)))
	}
	set := metrics.NewSet()
	sw, err := swarm.New(conns, swarm.Config{Instances: n, Services: 12, Name: "young", HeartbeatInterval: time.Second, Metrics: set})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sw.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("swarm: %v", err)
		}
	})
	victim := r.streamLeader()
	// The watcher and the registry read stay off the victim.
	stays := (victim + 1) % 3
	watcher := bustest.Connect(t, r.c.ClientURL(stays), nats.DontRandomize())
	reg := r.nodes[stays].n.Registry()
	// passingOn: every instance registered, passing, its record naming a
	// connection to a server that runs now.
	passingOn := func() error {
		live := map[string]bool{}
		for _, s := range r.c.Servers {
			if s != nil {
				live[s.ID()] = true
			}
		}
		var total, passing, onLive int
		reg.Each(func(rec events.InstanceRecord, _ uint64) {
			total++
			if rec.Status == events.Passing {
				passing++
			}
			if rec.Conn != nil && live[rec.Conn.Server] {
				onLive++
			}
		})
		if total != n || passing != n || onLive != n {
			return fmt.Errorf("%d registered, %d passing, %d on a running server; want %d", total, passing, onLive, n)
		}
		return nil
	}
	reconnected := func(old string) func() error {
		return func() error {
			for i, c := range conns {
				if s := c.ConnectedServerId(); s == "" || s == old {
					return fmt.Errorf("connection %d not reconnected", i)
				}
			}
			return passingOn()
		}
	}
	bustest.Eventually(t, 2*time.Minute, passingOn)
	beats := func() uint64 { return set.GetOrCreateCounter("hail_swarm_heartbeats_answered_total").Get() }
	rounds := func(k int) {
		t.Helper()
		b0 := beats()
		bustest.Eventually(t, 2*time.Minute, func() error {
			if got := beats() - b0; got < uint64(k*n) {
				return fmt.Errorf("%d heartbeats answered, want %d", got, k*n)
			}
			return nil
		})
	}
	// Two rounds over every instance before: the fleet is steady.
	rounds(2)

	crit := watchCritical(t, watcher)
	old := r.c.Servers[victim].ID()
	stopped := time.Now()
	if away {
		r.c.Stop(victim)
		bustest.Eventually(t, 2*time.Minute, reconnected(old))
		t.Logf("every client elsewhere %v after the stop", time.Since(stopped).Round(time.Millisecond))
	}
	if err := r.c.Restart(victim); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 2*time.Minute, reconnected(old))
	// Then every instance answers four more rounds: a false critical from
	// the restart, judged after three missed heartbeats, would show by
	// then.
	rounds(4)
	t.Logf("stop to four rounds after: %v", time.Since(stopped).Round(time.Millisecond))
	if evs := crit.take(); len(evs) > 0 {
		t.Errorf("%d false critical events, first %+v (%v after the stop)", len(evs), evs[0], evs[0].TS.Sub(stopped).Round(time.Millisecond))
	}
}

// joinPinned joins n instances of service on a connection to server i of
// the cluster alone (it learns no other): when that server goes away they
// are silent until it is back, and then re-announce their new conn.
func joinPinned(t *testing.T, r *region, i, n int, service string) (*nats.Conn, []string) {
	t.Helper()
	nc := bustest.Connect(t, fmt.Sprintf("nats://127.0.0.1:%d", r.c.Servers[i].Addr().(*net.TCPAddr).Port),
		nats.IgnoreDiscoveredServers(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	conn := hailmember.NewConn(nc, events.Subjects{}, 200*time.Millisecond)
	ids := make([]string, n)
	for k := range ids {
		id := uuid.NewString()
		ids[k] = id
		m, err := conn.Join(hailmember.Config{
			Service: service, ID: id,
			Announce: func() events.Announce {
				return events.Announce{ID: id, Service: service, Endpoints: []events.Endpoint{{Name: "say"}}, Weight: events.DefaultWeight}
			},
			Report: func() events.HeartbeatReply { return events.HeartbeatReply{} },
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close() })
	}
	return nc, ids
}

// A server shut down while instances connected to it alone are silent
// until it is back: the nodes on the other servers hear its SHUTDOWN and
// hold the judgement of that silence (serverLossGrace), though it lasts
// far longer than three heartbeats; the instances re-announce their new
// conn and answer, and none is ever critical. Meanwhile a process dying
// on a live server is critical at once (its DISCONNECT), and a hang there
// by its heartbeats.
func TestServerShutdownHoldsItsClientsSilence(t *testing.T) {
	set := metrics.NewSet()
	const interval = 200 * time.Millisecond
	r := newRegion(t, discovery.Config{Metrics: set, Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: interval, Timeout: interval / 2}}})
	r.start(0, "")
	r.start(2, "")
	watcher := bustest.Connect(t, r.c.ClientURL(0), nats.DontRandomize())
	h := (&env{&regiontest.Region{T: t, NC: watcher}}).watchHealth()
	_, pinned := joinPinned(t, r, 1, 20, "pinned")
	liveNC := bustest.Connect(t, r.c.ClientURL(0), nats.DontRandomize())
	dies := fakeinst.Start(t, r.c.ClientURL(0), fakeinst.Options{Service: "dies", Conn: liveNC, AnnounceConn: true})
	hangs := fakeinst.Start(t, r.c.ClientURL(0), fakeinst.Options{Service: "hangs", AnnounceConn: true, Conn: bustest.Connect(t, r.c.ClientURL(0), nats.DontRandomize())})
	reg := r.nodes[0].n.Registry()
	keys := []string{events.InstanceKey("dies", dies.ID), events.InstanceKey("hangs", hangs.ID)}
	for _, id := range pinned {
		keys = append(keys, events.InstanceKey("pinned", id))
	}
	bustest.Eventually(t, 20*time.Second, func() error {
		for _, k := range keys {
			if rec, ok := reg.Get(k); !ok || rec.Status != events.Passing || rec.Conn == nil {
				return fmt.Errorf("%s: %+v", k, rec)
			}
		}
		return nil
	})
	held := func() float64 { return counter(set, "hail_discovery_heartbeats_held_server_lost_total") }
	crit := watchCritical(t, watcher)

	// The heartbeats sent to the pinned instances, seen from server 0.
	var sentMu sync.Mutex
	sent := map[string]int{}
	hbs, err := watcher.Subscribe(subjects.Heartbeat("*"), func(m *nats.Msg) {
		sentMu.Lock()
		sent[m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]]++
		sentMu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := watcher.Flush(); err != nil {
		t.Fatal(err)
	}
	r.c.Stop(1)
	sentMu.Lock()
	clear(sent)
	sentMu.Unlock()
	// Five heartbeats sent to every pinned instance since the stop, none
	// answered: three missed would make it critical, judged alone.
	bustest.Eventually(t, 20*time.Second, func() error {
		sentMu.Lock()
		defer sentMu.Unlock()
		for _, id := range pinned {
			if sent[id] < 5 {
				return fmt.Errorf("%d heartbeats sent to %s since the stop", sent[id], id)
			}
		}
		return nil
	})
	_ = hbs.Unsubscribe()
	if got := held(); got < float64(3*len(pinned)) {
		t.Errorf("%v silent heartbeats held, want at least %d", got, 3*len(pinned))
	}
	if evs := crit.take(); len(evs) > 0 {
		t.Fatalf("%d critical while their server was down, first %+v", len(evs), evs[0])
	}
	if got := counter(set, `hail_discovery_servers_lost_total{how="shutdown"}`); got < 1 {
		t.Errorf("%v shutdowns heard", got)
	}
	liveNC.Close()
	if ev := h.wait(t, dies.ID, events.Critical, 5*time.Second); !strings.HasPrefix(ev.Reason, "disconnected: ") {
		t.Errorf("a process dying on a live server: critical for %q, want its disconnect", ev.Reason)
	}
	hangs.Silence()
	if ev := h.wait(t, hangs.ID, events.Critical, 5*time.Second); strings.HasPrefix(ev.Reason, "disconnected: ") {
		t.Errorf("a hang on a live server: critical for %q, want missed heartbeats", ev.Reason)
	}

	if err := r.c.Restart(1); err != nil {
		t.Fatal(err)
	}
	back := r.c.Servers[1].ID()
	bustest.Eventually(t, 20*time.Second, func() error {
		for _, id := range pinned {
			rec, ok := reg.Get(events.InstanceKey("pinned", id))
			if !ok || rec.Conn == nil || rec.Conn.Server != back {
				return fmt.Errorf("%s not re-announced on the restarted server: %+v", id, rec.Conn)
			}
		}
		return nil
	})
	// Three rounds more, answered.
	b0 := counter(set, "hail_discovery_heartbeats_sent_total")
	bustest.Eventually(t, 20*time.Second, func() error {
		if got := counter(set, "hail_discovery_heartbeats_sent_total") - b0; got < float64(3*len(pinned)) {
			return fmt.Errorf("%v heartbeats", got)
		}
		return nil
	})
	for _, id := range pinned {
		if rec, _ := reg.Get(events.InstanceKey("pinned", id)); rec.Status != events.Passing {
			t.Errorf("%s: %s", id, rec.Status)
		}
	}
	for _, ev := range crit.take() {
		if ev.ID != dies.ID && ev.ID != hangs.ID {
			t.Errorf("false critical %+v", ev)
		}
	}
}
