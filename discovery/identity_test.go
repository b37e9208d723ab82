package discovery_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
)

// PROTOCOL v1.6: an identity announces on hail.announce.<S>.<id> and
// deregisters on hail.deregister.<S>.<id>, and is answered on its own
// inbox, _INBOX.<id>. A body whose service or id differs from the
// subject's is refused (400, counted); an answer into another identity's
// inbox, or into an identity's for the v1 form, is not sent. The v1
// subjects keep working for regions without identities.
func TestIdentitySubjects(t *testing.T) {
	e := newEnv(t)
	set := metrics.NewSet()
	e.StartNode(discovery.Config{Metrics: set})
	a, b := uuid.NewString(), uuid.NewString()
	announce := func(id, service string) []byte {
		return mustJSON(t, events.Announce{ID: id, Service: service, Version: "1.0.0", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100, Scoped: true})
	}
	deregister := func(id, service string) []byte {
		return mustJSON(t, events.Deregister{ID: id, Service: service, Reason: "test"})
	}
	for _, c := range []struct {
		name, subject, inbox string
		body                 []byte
		// want: "ok", a rejected reason (a 400), or "" for no answer
		// (the reply rule's refusal, counted under reason).
		want, reason string
		registered   map[string]bool // keys present after it
	}{
		{name: "own announce", subject: subjects.Announce("echo") + "." + a, inbox: "_INBOX." + a, body: announce(a, "echo"),
			want: "ok", registered: map[string]bool{"echo." + a: true}},
		{name: "another id in the body", subject: subjects.Announce("echo") + "." + a, inbox: "_INBOX." + a, body: announce(b, "echo"),
			want: "400", reason: "id_mismatch", registered: map[string]bool{"echo." + b: false}},
		{name: "another service in the body", subject: subjects.Announce("echo") + "." + a, inbox: "_INBOX." + a, body: announce(a, "greeter"),
			want: "400", reason: "service_mismatch", registered: map[string]bool{"greeter." + a: false}},
		{name: "answer into another identity's inbox", subject: subjects.Announce("echo") + "." + b, inbox: "_INBOX." + a, body: announce(b, "echo"),
			reason: "foreign_reply", registered: map[string]bool{"echo." + b: false}},
		{name: "identity inbox on the v1 subject", subject: subjects.Announce("echo"), inbox: "_INBOX." + b, body: announce(b, "echo"),
			reason: "foreign_reply", registered: map[string]bool{"echo." + b: false}},
		{name: "deregister of another id in the body", subject: subjects.Deregister("echo") + "." + b, inbox: "_INBOX." + b, body: deregister(a, "echo"),
			want: "400", reason: "id_mismatch", registered: map[string]bool{"echo." + a: true}},
		{name: "v1 announce", subject: subjects.Announce("echo"), inbox: "_INBOX.svc-echo", body: announce(b, "echo"),
			want: "ok", registered: map[string]bool{"echo." + b: true}},
		{name: "admin deregisters an identity", subject: subjects.Deregister("echo") + "." + a, inbox: "_INBOX.admin", body: deregister(a, "echo"),
			want: "ok", registered: map[string]bool{"echo." + a: false, "echo." + b: true}},
		{name: "own deregister", subject: subjects.Deregister("echo") + "." + b, inbox: "_INBOX." + b, body: deregister(b, "echo"),
			want: "ok", registered: map[string]bool{"echo." + b: false}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := rejected(set, c.reason)
			reply := c.inbox + "." + nats.NewInbox()[len("_INBOX."):]
			sub, err := e.NC.SubscribeSync(reply)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			if err := e.NC.PublishRequest(c.subject, reply, c.body); err != nil {
				t.Fatal(err)
			}
			switch c.want {
			case "":
				bustest.Eventually(t, 5*time.Second, func() error {
					if rejected(set, c.reason) <= before {
						return fmt.Errorf("no %s refusal counted", c.reason)
					}
					return nil
				})
				if m, err := sub.NextMsg(100 * time.Millisecond); err == nil {
					t.Fatalf("answered %s", m.Data)
				}
			case "ok":
				m, err := sub.NextMsg(5 * time.Second)
				if err != nil {
					t.Fatal(err)
				}
				var ack events.Ack
				if err := json.Unmarshal(m.Data, &ack); err != nil || !ack.OK {
					t.Fatalf("answered %s %v, want an ack", m.Data, m.Header)
				}
			default:
				m, err := sub.NextMsg(5 * time.Second)
				if err != nil {
					t.Fatal(err)
				}
				code, text, isErr := events.ReplyError(m)
				if !isErr || fmt.Sprint(code) != c.want || !strings.Contains(text, "differs from") {
					t.Fatalf("answered %d %q, want a %s that says what differs", code, text, c.want)
				}
				if rejected(set, c.reason) <= before {
					t.Errorf("not counted under %s", c.reason)
				}
			}
			for key, want := range c.registered {
				bustest.Eventually(t, 5*time.Second, func() error {
					if _, err := e.Record(key); (err == nil) != want {
						return fmt.Errorf("%s registered: %v, want %v", key, err == nil, want)
					}
					return nil
				})
			}
		})
	}
}

func rejected(set *metrics.Set, reason string) uint64 {
	if reason == "" {
		return 0
	}
	return set.GetOrCreateCounter(fmt.Sprintf(`hail_discovery_rejected_total{reason=%q}`, reason)).Get()
}
