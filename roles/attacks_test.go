package roles_test

// The attacks of the [security] issue, each tried again against a region
// running under its roles; each must now fail to do harm. The attacker
// holds a credential of its own: svc-evil (an instance of another
// service) or caller. Attacks whose defence is code in one package, not
// the bus's permissions, are tested there as well:
//
//   - duplicate and case-variant keys, null, invalid UTF-8:
//     events.TestDuplicateKeysAndUTF8Refused, schemas.FuzzDecodersAgreeWithSchemas
//   - forged hail_nodes entries: discovery.TestForgedNodesAreNoMembers
//   - a forged health event on another instance's subject:
//     router.TestForgedHealthEventIgnored, and the down mark lapsing:
//     router.TestDownMarkLapses
//   - replies to a subject outside _INBOX.: discovery.TestRepliesOnlyToInboxes,
//     router.TestRouterRepliesOnlyToInboxes; into another's inbox (the
//     confused deputy): deputy_test.go, discovery.TestReplyRule
//   - a garbage record: discovery.TestAnnounceOverwritesGarbage
//   - a deleted bucket: discovery.TestDeletedBucketRecreatedAndNodeNotReady,
//     router.TestDeletedBucketMakesRouterNotReady; bucket and stream
//     limits: bus.TestBucketsBounded
//   - the console (no auth, a cross-site form, a text/plain body, a forged
//     Host): console.TestGuard, TestLoginSetsAStrictHttpOnlyCookie
//   - secrets in --print-config: config.TestPrintRedactsSecrets; the
//     programs' credentials and private CA: bus.TestConnectWithCredentials,
//     TestConnectWithPrivateCA; the server's TLS, auth and open listen:
//     services/nats TestSecureInitAndServe, TestOpenOnlyWhenToldInsecure

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/roles"
	"github.com/hailsd/hail/router"
)

// target is a secured region serving echo, and the connections of two
// would-be attackers.
type target struct {
	s       *server.Server
	disc    *as
	caller  *as // a legitimate caller, for the harm checks
	evil    *as // svc-evil
	thief   *as // a second caller credential, used to attack
	echo    *fakeinst.Instance
	metrics *metrics.Set
}

// newTarget runs discovery (heartbeats every 100 ms), a router and one
// scoped echo instance, each under its role.
func newTarget(t *testing.T) *target {
	t.Helper()
	disc, rt, caller, con := roles.Discovery(subjects), roles.Router(subjects), roles.Caller(subjects), roles.Console(subjects)
	echoRole, evil := roles.Service(subjects, "echo"), roles.Service(subjects, "evil")
	tg := &target{s: secured(t, disc, rt, caller, con, echoRole, evil), metrics: metrics.NewSet()}

	tg.disc = connectAs(t, tg.s, disc)
	kv, err := bus.EnsureBuckets(t.Context(), tg.disc.nc, bus.BucketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node, err := discovery.New(tg.disc.nc, kv, discovery.Config{Metrics: tg.metrics,
		Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 100 * time.Millisecond, Timeout: 80 * time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	run(t, "discovery", node.Run)
	<-node.Serving()
	r := connectAs(t, tg.s, rt)
	rtr, err := router.New(r.nc, router.Config{StatsInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	run(t, "router", rtr.Run)

	tg.echo = fakeinst.Start(t, "", fakeinst.Options{Service: "echo", Scoped: true, Conn: connectAs(t, tg.s, echoRole).nc})
	tg.caller = connectAs(t, tg.s, caller)
	tg.thief = connectAs(t, tg.s, caller)
	tg.evil = connectAs(t, tg.s, evil)
	tg.serves(t)
	return tg
}

// serves checks the harm: 20 routed requests in a row all answered, and
// echo's record as it was announced, passing.
func (tg *target) serves(t *testing.T) {
	t.Helper()
	bustest.Eventually(t, 10*time.Second, func() error {
		for i := range 20 {
			m, err := tg.caller.nc.Request(subjects.Route("echo", "say"), []byte("hi"), time.Second)
			if err != nil {
				return fmt.Errorf("routed request %d: %w", i, err)
			}
			if code, text, isErr := events.ReplyError(m); isErr {
				return fmt.Errorf("routed request %d answered %d %s", i, code, text)
			}
		}
		return nil
	})
	recs := tg.instances(t)
	if len(recs) != 1 || recs[0].ID != tg.echo.ID || recs[0].Status != events.Passing || recs[0].Weight != 100 ||
		len(recs[0].Endpoints) != 1 || recs[0].Endpoints[0].Name != "say" {
		t.Fatalf("echo's registry is not as announced: %+v", recs)
	}
}

func (tg *target) instances(t *testing.T) []events.InstanceRecord {
	t.Helper()
	m, err := tg.caller.nc.Request(subjects.DiscoveryInstances(), []byte(`{"service":"echo"}`), 2*time.Second)
	if err != nil {
		t.Fatalf("instances query: %v", err)
	}
	var recs []events.InstanceRecord
	if err := json.Unmarshal(m.Data, &recs); err != nil {
		t.Fatalf("instances answer %s: %v", m.Data, err)
	}
	return recs
}

// refused does what, as a, and waits for the server to refuse it.
func refused(t *testing.T, a *as, what string, do func(nc *nats.Conn) error) {
	t.Helper()
	before := len(a.count())
	if err := do(a.nc); err != nil && !strings.Contains(err.Error(), "ermissions") {
		t.Fatalf("%s: %v", what, err)
	}
	_ = a.nc.Flush()
	bustest.Eventually(t, 2*time.Second, func() error {
		if len(a.count()) == before {
			return fmt.Errorf("the server let it %s", what)
		}
		return nil
	})
}

func (tg *target) announceOfEcho(id string) []byte {
	b, _ := json.Marshal(events.Announce{ID: id, Service: "echo", Endpoints: []events.Endpoint{{Name: "other"}}, Weight: 0})
	return b
}

// Announcing with echo's id (to drain it and take its endpoint away), also
// as {"id":…,"ID":…}, does nothing.
func TestAttackHijackInstance(t *testing.T) {
	tg := newTarget(t)
	for _, a := range []*as{tg.evil, tg.thief} {
		refused(t, a, "announce echo", func(nc *nats.Conn) error {
			return nc.Publish(subjects.Announce("echo"), tg.announceOfEcho(tg.echo.ID))
		})
	}
	// Under its own service's subject, a body that names echo, or the
	// id twice in two cases, is refused with the reason.
	for _, body := range []string{
		string(tg.announceOfEcho(tg.echo.ID)),
		fmt.Sprintf(`{"id":%q,"ID":%q,"service":"evil","endpoints":[{"name":"say"}]}`, uuid.NewString(), tg.echo.ID),
	} {
		m, err := tg.evil.nc.Request(subjects.Announce("evil"), []byte(body), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if code, _, _ := events.ReplyError(m); code != events.CodeBadRequest {
			t.Errorf("announce %s answered %d %s, want a %d", body, code, m.Data, events.CodeBadRequest)
		}
	}
	tg.serves(t)
}

// Deregistering echo six times a second, as anyone else, does nothing.
func TestAttackDeregisterOthers(t *testing.T) {
	tg := newTarget(t)
	body := fmt.Sprintf(`{"id":%q,"service":"echo"}`, tg.echo.ID)
	for _, a := range []*as{tg.evil, tg.thief} {
		for range 6 {
			refused(t, a, "deregister echo", func(nc *nats.Conn) error { return nc.Publish(subjects.Deregister("echo"), []byte(body)) })
		}
	}
	tg.serves(t)
}

// Forged critical health events (three, and a flood of junk meant to wipe
// HAIL_EVENTS' history) are refused at the server.
func TestAttackForgeHealthEvents(t *testing.T) {
	tg := newTarget(t)
	ev := fmt.Sprintf(`{"id":%q,"service":"echo","status":"critical","previous":"passing","node":%q,"ts":%q}`,
		tg.echo.ID, uuid.NewString(), time.Now().UTC().Format(time.RFC3339Nano))
	for _, a := range []*as{tg.evil, tg.thief} {
		for range 3 {
			refused(t, a, "publish a health event", func(nc *nats.Conn) error {
				return nc.Publish(subjects.Health("echo", tg.echo.ID), []byte(ev))
			})
		}
		refused(t, a, "flood hail.health", func(nc *nats.Conn) error {
			return nc.Publish(subjects.Health("evil", uuid.NewString()), make([]byte, 512<<10))
		})
	}
	tg.serves(t)
}

// Instances of the attacker's own service that never answer cannot put a
// node into self-preservation: a real instance killed afterwards still
// goes critical. Forged hail_nodes entries are refused at the server.
func TestAttackDisableFailureDetection(t *testing.T) {
	tg := newTarget(t)
	for range 10 {
		f := fakeinst.Start(t, "", fakeinst.Options{Service: "evil", Scoped: true, Conn: tg.evil.nc, Manual: true})
		f.Silence()
		if _, err := tg.evil.nc.Request(subjects.Announce("evil"), f.AnnounceData(), 2*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	refused(t, tg.evil, "write hail_nodes", func(nc *nats.Conn) error {
		id := uuid.NewString()
		return nc.Publish("$KV."+bus.NodesBucket+"."+id, []byte(`{"id":"`+id+`","started_at":"2026-12-02T10:00:00Z","ts":"2026-12-02T10:00:00Z"}`))
	})
	victim := fakeinst.Start(t, "", fakeinst.Options{Service: "echo", Scoped: true, Conn: connectAs(t, tg.s, roles.Service(subjects, "echo")).nc})
	bustest.Eventually(t, 5*time.Second, func() error {
		if n := len(tg.instances(t)); n != 2 {
			return fmt.Errorf("%d echo instances", n)
		}
		return nil
	})
	victim.Kill()
	bustest.Eventually(t, 5*time.Second, func() error {
		for _, rec := range tg.instances(t) {
			if rec.ID == victim.ID && rec.Status == events.Critical {
				return nil
			}
		}
		return fmt.Errorf("the killed instance is not critical")
	})
	if v := tg.metrics.GetOrCreateGauge("hail_discovery_self_preservation", nil).Get(); v != 0 {
		t.Errorf("node in self-preservation (%v)", v)
	}
}

// Taking over routing: queue-subscribing hail.route.> in the routers'
// group, hearing echo's heartbeats or requests (to answer for it), and
// forging a no-responders reply into the router's inbox are refused.
func TestAttackTakeOverRouting(t *testing.T) {
	tg := newTarget(t)
	sub := func(subject, queue string) func(nc *nats.Conn) error {
		return func(nc *nats.Conn) error {
			_, err := nc.QueueSubscribe(subject, queue, func(*nats.Msg) {})
			return err
		}
	}
	for _, a := range []*as{tg.evil, tg.thief} {
		refused(t, a, "queue-subscribe hail.route.> hail.router", sub(subjects.RouteAll(), "hail.router"))
		refused(t, a, "hear echo's heartbeats", sub(subjects.HeartbeatOf("echo", tg.echo.ID, true), ""))
		refused(t, a, "take echo's requests", sub(subjects.InstOf("echo", tg.echo.ID, "say", true), ""))
		refused(t, a, "subscribe _INBOX.>", sub("_INBOX.>", ""))
		refused(t, a, "forge a no-responders reply", func(nc *nats.Conn) error {
			return nc.PublishMsg(&nats.Msg{Subject: roles.Router(subjects).InboxPrefix() + ".x.1", Header: nats.Header{"Status": {"503"}}})
		})
	}
	tg.serves(t)
}

// A query whose reply subject is a health subject makes discovery publish
// nothing there.
func TestAttackReplyIntoHealth(t *testing.T) {
	tg := newTarget(t)
	heard := make(chan *nats.Msg, 1)
	con := connectAs(t, tg.s, roles.Console(subjects))
	s, err := con.nc.ChanSubscribe(subjects.Health("echo", tg.echo.ID), heard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Unsubscribe()
	if err := tg.thief.nc.PublishRequest(subjects.DiscoveryServices(), subjects.Health("echo", tg.echo.ID), []byte("{}")); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 5*time.Second, func() error {
		var b strings.Builder
		tg.metrics.WritePrometheus(&b)
		if !strings.Contains(b.String(), `hail_discovery_rejected_total{reason="reply_subject"} 1`) {
			return fmt.Errorf("not refused yet")
		}
		return nil
	})
	select {
	case m := <-heard:
		t.Errorf("discovery published on %s: %s", m.Subject, m.Data)
	default:
	}
	tg.serves(t)
}
