package discovery_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/internal/testlog"
	hailmember "github.com/hailsd/hail/member"
)

// slow heartbeats: an instance found critical within the test was found
// by its connection's disconnect advisory, not by missed heartbeats.
var slowBeats = discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 5 * time.Second, Timeout: 2 * time.Second}}

// onConn starts n fake instances of service on one connection of their
// own, each announcing it.
func (e *env) onConn(service string, n int) (*nats.Conn, []*fakeinst.Instance) {
	e.T.Helper()
	nc := bustest.Connect(e.T, e.URL)
	fs := make([]*fakeinst.Instance, n)
	for i := range fs {
		fs[i] = fakeinst.Start(e.T, e.URL, fakeinst.Options{Service: service, Conn: nc, AnnounceConn: true})
	}
	return nc, fs
}

// The owner marks every instance of a closed connection critical at once,
// reason "disconnected: <the server's reason>", and leaves the others.
func TestDisconnectMarksEveryInstanceOfTheConnection(t *testing.T) {
	e := newEnv(t)
	set := metrics.NewSet()
	e.StartNode(discovery.Config{Timing: slowBeats, Metrics: set})
	nc, fs := e.onConn("echo", 300)
	_, others := e.onConn("echo", 2)
	for _, f := range append(fs, others...) {
		e.waitStatus(events.InstanceKey("echo", f.ID), events.Passing, 10*time.Second)
	}
	h := e.watchHealth()
	nc.Close()
	// Heartbeats every 5 s miss three times in 15 s at the earliest.
	want := map[string]bool{}
	for _, f := range fs {
		want[f.ID] = true
	}
	for ev := range h.all(t, events.Critical, len(fs), 10*time.Second) {
		if !want[ev.ID] || ev.Reason != "disconnected: Client Closed" {
			t.Fatalf("critical event %+v, want one of the closed connection's, reason disconnected: Client Closed", ev)
		}
		delete(want, ev.ID)
	}
	for _, f := range fs {
		e.waitStatus(events.InstanceKey("echo", f.ID), events.Critical, 5*time.Second)
	}
	for _, f := range others {
		if r, err := e.Record(events.InstanceKey("echo", f.ID)); err != nil || r.Status != events.Passing {
			t.Errorf("an instance on another connection: %+v, %v", r.Status, err)
		}
	}
	h.none(t, events.Critical)
	if !strings.Contains(metricsText(set), `hail_discovery_disconnects_total{outcome="marked"} 1`) {
		t.Errorf("the marked connection is not counted:\n%s", metricsText(set))
	}
}

// A critical instance whose connection came back answers its heartbeats
// again and is passing again, as before v1.4.
func TestDisconnectedInstancePassesAgainWhenItAnswers(t *testing.T) {
	srv := bustest.RunServer(t)
	e := envOn(t, srv.ClientURL(), bustest.Connect(t, srv.ClientURL()))
	e.StartNode(discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 200 * time.Millisecond, Timeout: 100 * time.Millisecond}}})
	victim := bustest.Connect(t, e.URL, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	f := fakeinst.Start(t, e.URL, fakeinst.Options{Service: "echo", Conn: victim, AnnounceConn: true})
	e.waitStatus(events.InstanceKey("echo", f.ID), events.Passing, 10*time.Second)
	h := e.watchHealth()
	// The server drops the connection (as it drops a slow consumer); the
	// client reconnects and answers its heartbeats again.
	cid, _ := victim.GetClientID()
	if err := srv.DisconnectClientByID(cid); err != nil {
		t.Fatal(err)
	}
	ev := h.wait(t, f.ID, events.Critical, 10*time.Second)
	if !strings.HasPrefix(ev.Reason, "disconnected: ") {
		t.Fatalf("critical for %q, want a disconnect", ev.Reason)
	}
	h.wait(t, f.ID, events.Passing, 20*time.Second)
}

// A server that shuts down sends no advisory (its clients reconnect
// elsewhere and announce their new connection), and an advisory whose
// reason is Server Shutdown marks nothing; unknown connections are
// counted.
func TestUnknownConnectionsAreCounted(t *testing.T) {
	e := newEnv(t)
	set := metrics.NewSet()
	e.StartNode(discovery.Config{Timing: slowBeats, Metrics: set})
	other := bustest.Connect(t, e.URL)
	other.Close()
	bustest.Eventually(t, 10*time.Second, func() error {
		if counter(set, `hail_discovery_disconnects_total{outcome="unknown"}`) < 1 {
			return errors.New("the unknown connection is not counted")
		}
		return nil
	})
}

// A conn naming another connection harms only the announcer's own
// record; a forged advisory from a client of hail's account never
// reaches discovery.
func TestForgedConnAndAdvisoryHarmNobodyElse(t *testing.T) {
	e := newEnv(t)
	e.StartNode(discovery.Config{Timing: slowBeats})
	victimNC, victims := e.onConn("echo", 1)
	victim := victims[0]
	vid, _ := victimNC.GetClientID()
	victimConn := events.Conn{Server: victimNC.ConnectedServerId(), Client: vid}

	// A liar announces the victim's connection as its own, then dies.
	liarNC := bustest.Connect(t, e.URL)
	liar := fakeinst.Start(t, e.URL, fakeinst.Options{Service: "echo", Conn: liarNC, Edit: func(a *events.Announce) { c := victimConn; a.Conn = &c }})
	for _, f := range []*fakeinst.Instance{victim, liar} {
		e.waitStatus(events.InstanceKey("echo", f.ID), events.Passing, 10*time.Second)
	}
	h := e.watchHealth()
	liarNC.Close()

	// A forgery naming the victim's connection, from a client of the
	// account: the server refuses it.
	refused := make(chan error, 1)
	forger := bustest.Connect(t, e.URL, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case refused <- err:
		default:
		}
	}))
	forged, _ := json.Marshal(map[string]any{"server": map[string]any{"id": victimConn.Server}, "client": map[string]any{"id": victimConn.Client}, "reason": "Read Error"})
	if err := forger.Publish("$SYS.ACCOUNT.HAIL.DISCONNECT", forged); err != nil {
		t.Fatal(err)
	}
	forger.Flush()
	select {
	case err := <-refused:
		if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Errorf("forged advisory: %v, want a permissions violation", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("a forged advisory was not refused")
	}
	// A canary closes after both: once its advisory has been acted on,
	// the ones before it were too.
	canaryNC, canaries := e.onConn("canary", 1)
	e.waitStatus(events.InstanceKey("canary", canaries[0].ID), events.Passing, 10*time.Second)
	canaryNC.Close()
	h.wait(t, canaries[0].ID, events.Critical, 10*time.Second)
	if r, err := e.Record(events.InstanceKey("echo", victim.ID)); err != nil || r.Status != events.Passing {
		t.Errorf("the victim: %s, %v; want passing", r.Status, err)
	}
	h.none(t, events.Critical)
}

// A server of a 3-node cluster restarted: its clients reconnect to the
// others and announce their new connections; nothing goes critical.
func TestClusterServerRestartGivesNoFalseCritical(t *testing.T) {
	r := newRegion(t, discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: time.Second, Timeout: 500 * time.Millisecond}}})
	r.start(0, "")
	instNC := bustest.Connect(t, r.c.ClientURL(1), nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	conn := hailmember.NewConn(instNC, events.Subjects{}, time.Second)
	const n = 50
	ids := make([]string, n)
	for i := range ids {
		id := uuid.NewString()
		ids[i] = id
		m, err := conn.Join(hailmember.Config{
			Service: "echo", ID: id,
			Announce: func() events.Announce {
				return events.Announce{ID: id, Service: "echo", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: events.DefaultWeight}
			},
			Report: func() events.HeartbeatReply { return events.HeartbeatReply{} },
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close() })
	}
	recordsOn := func(server string) error {
		for _, id := range ids {
			e, err := r.kv.Instances.Get(t.Context(), events.InstanceKey("echo", id))
			if err != nil {
				return err
			}
			rec, err := events.DecodeInstanceRecord(e.Value())
			if err != nil {
				return err
			}
			if rec.Status != events.Passing || rec.Conn == nil || rec.Conn.Server != server {
				return fmt.Errorf("%s: %s on %+v, want passing on %s", id, rec.Status, rec.Conn, server)
			}
		}
		return nil
	}
	old := r.c.Servers[1].ID()
	bustest.Eventually(t, 20*time.Second, func() error { return recordsOn(old) })

	var mu sync.Mutex
	var critical []events.HealthEvent
	sub, err := r.nc.Subscribe(events.Subjects{}.HealthAll(), func(m *nats.Msg) {
		ev, err := events.DecodeHealthEvent(m.Data)
		if err == nil && ev.Status == events.Critical {
			mu.Lock()
			critical = append(critical, ev)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	r.nc.Flush()
	if err := r.c.Restart(1); err != nil {
		t.Fatal(err)
	}
	// The connection is on another server now, or on the restarted one.
	bustest.Eventually(t, 30*time.Second, func() error {
		now := instNC.ConnectedServerId()
		if now == "" || now == old {
			return errors.New("not reconnected")
		}
		return recordsOn(now)
	})
	// Three heartbeats more: a false critical from the restart would show.
	deadline := time.Now().Add(3 * time.Second)
	bustest.Eventually(t, 10*time.Second, func() error {
		if time.Now().Before(deadline) {
			return errors.New("waiting three heartbeats")
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if len(critical) > 0 {
		t.Errorf("%d false critical events, first %+v", len(critical), critical[0])
	}
}

// all yields the next n events of status, failing if they do not come
// within timeout.
func (h *healthEvents) all(t *testing.T, status events.Status, n int, timeout time.Duration) func(func(events.HealthEvent) bool) {
	return func(yield func(events.HealthEvent) bool) {
		deadline := time.After(timeout)
		for got := 0; got < n; {
			select {
			case ev := <-h.ch:
				if ev.Status != status {
					continue
				}
				got++
				if !yield(ev) {
					return
				}
			case <-deadline:
				t.Fatalf("%d %s events within %v, want %d", got, status, timeout, n)
			}
		}
	}
}

// A NATS server of the user's own, without the import of the disconnect
// advisories: discovery says once what to add (every server event), and
// heartbeats alone judge.
func TestServerWithoutAdvisoriesSaidOnce(t *testing.T) {
	srv := bustest.RunServerWith(t, func(o *server.Options) {
		o.Users = []*server.User{{Username: "anyone"}}
		o.NoAuthUser = "anyone"
	})
	e := envOn(t, srv.ClientURL(), bustest.Connect(t, srv.ClientURL()))
	var logs testlog.Buffer
	e.StartNode(discovery.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond}}})
	const said = "sends no disconnect advisories"
	bustest.Eventually(t, 20*time.Second, func() error {
		if _, ok := logs.Line(said); !ok {
			return errors.New("not said")
		}
		return nil
	})
	// What to add names every server event hail imports, the connect
	// advisories (v1.6) among them.
	line, _ := logs.Line(said)
	for _, subject := range events.ServerEvents {
		if !strings.Contains(line, subject) {
			t.Errorf("the warning does not name %s: %s", subject, line)
		}
	}
	nc, fs := e.onConn("echo", 1)
	e.waitStatus(events.InstanceKey("echo", fs[0].ID), events.Passing, 10*time.Second)
	h := e.watchHealth()
	nc.Close()
	if ev := h.wait(t, fs[0].ID, events.Critical, 10*time.Second); !strings.Contains(ev.Reason, "heartbeats missed") {
		t.Errorf("critical for %q, want missed heartbeats", ev.Reason)
	}
	if n := strings.Count(logs.String(), said); n != 1 {
		t.Errorf("said %d times, want once", n)
	}
}

// A NATS server of the user's own that exports the disconnect advisories
// but not the connect advisories (a config written before v1.6): discovery
// says once that CONNECT is missing, sets its gauge to 0, and marks as
// before.
func TestServerWithoutConnectAdvisoriesSaidOnce(t *testing.T) {
	conf := `
system_account: SYS
no_auth_user: hail
accounts: {
  SYS: { exports: [{stream: "$SYS.ACCOUNT.*.DISCONNECT", accounts: [HAIL]}] }
  HAIL: {
    jetstream: enabled
    imports: [{stream: {account: SYS, subject: "$SYS.ACCOUNT.*.DISCONNECT"}}]
    users: [{user: hail, permissions: {publish: {deny: ["$SYS.>"]}}}]
  }
}`
	srv := bustest.RunServerWith(t, func(o *server.Options) {
		var d server.Options
		if err := d.ProcessConfigString(conf); err != nil {
			t.Fatal(err)
		}
		o.Accounts, o.Users, o.NoAuthUser, o.SystemAccount = d.Accounts, d.Users, d.NoAuthUser, d.SystemAccount
	})
	e := envOn(t, srv.ClientURL(), bustest.Connect(t, srv.ClientURL()))
	var logs testlog.Buffer
	set := metrics.NewSet()
	e.StartNode(discovery.Config{Metrics: set, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Timing: slowBeats})
	const said = "sends no connect advisories"
	bustest.Eventually(t, 20*time.Second, func() error {
		if _, ok := logs.Line(said); !ok {
			return errors.New("not said")
		}
		return nil
	})
	if line, _ := logs.Line(said); !strings.Contains(line, events.ConnectAll) {
		t.Errorf("the warning does not name %s: %s", events.ConnectAll, line)
	}
	if got := counter(set, "hail_discovery_connect_advisories"); got != 0 {
		t.Errorf("hail_discovery_connect_advisories = %v, want 0", got)
	}
	if got := counter(set, "hail_discovery_disconnect_advisories"); got != 1 {
		t.Errorf("hail_discovery_disconnect_advisories = %v, want 1: those come", got)
	}
	if _, ok := logs.Line("sends no disconnect advisories"); ok {
		t.Error("said the disconnect advisories are missing")
	}
	// Still marked at its disconnect.
	nc, fs := e.onConn("echo", 1)
	e.waitStatus(events.InstanceKey("echo", fs[0].ID), events.Passing, 10*time.Second)
	h := e.watchHealth()
	nc.Close()
	if ev := h.wait(t, fs[0].ID, events.Critical, 10*time.Second); !strings.HasPrefix(ev.Reason, "disconnected: ") {
		t.Errorf("critical for %q, want a disconnect", ev.Reason)
	}
	if n := strings.Count(logs.String(), said); n != 1 {
		t.Errorf("said %d times, want once", n)
	}
}

// Clients connecting and closing in a loop flood discovery with
// advisories for connections it does not know: they are counted, and the
// heartbeats of the instances it owns go on (none is found critical).
func TestAdvisoryFloodDoesNotStallHeartbeats(t *testing.T) {
	e := newEnv(t)
	set := metrics.NewSet()
	e.StartNode(discovery.Config{Metrics: set, Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 200 * time.Millisecond, Timeout: 150 * time.Millisecond}}})
	_, fs := e.onConn("echo", 20)
	for _, f := range fs {
		e.waitStatus(events.InstanceKey("echo", f.ID), events.Passing, 10*time.Second)
	}
	h := e.watchHealth()
	before := fs[0].Beats()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 250 {
				// The flood's connects wait as long as the machine makes
				// them: on two cores shared with a whole test run, 2 s
				// was not always enough, and a connect given up on floods
				// nothing.
				nc, err := nats.Connect(e.URL, nats.Timeout(30*time.Second))
				if err != nil {
					t.Error(err)
					return
				}
				nc.Close()
			}
		})
	}
	wg.Wait()
	bustest.Eventually(t, 20*time.Second, func() error {
		if n := counter(set, `hail_discovery_disconnects_total{outcome="unknown"}`); n < 1 {
			return fmt.Errorf("%v unknown connections counted", n)
		}
		if fs[0].Beats() < before+5 {
			return errors.New("heartbeats stalled")
		}
		return nil
	})
	h.none(t, events.Critical)
}
