package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
)

// A re-announce of a known instance that changes nothing is answered
// while the node's loop is held busy (no trip through it) and writes
// nothing (the KV revision stays); a changed announce after it is queued
// and applied, and an announce that would be unchanged as of the stored
// record but follows the changed one in flight waits its turn behind it,
// so the last announce sent is the one that stands.
func TestUnchangedReannounceFastPath(t *testing.T) {
	n, nc := runningNode(t, Config{})
	a := events.Announce{ID: uuid.NewString(), Service: "echo", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100}
	key := events.InstanceKey(a.Service, a.ID)
	request := func(a events.Announce) (*nats.Msg, error) {
		data, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		return nc.Request(events.Subjects{}.Announce(a.Service), data, 2*time.Second)
	}
	acked := func(m *nats.Msg, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		var ack events.Ack
		if err := json.Unmarshal(m.Data, &ack); err != nil || !ack.OK || ack.ID != a.ID || ack.Node != n.ID() {
			t.Fatalf("answer %s (%v), want an ack of %s by %s", m.Data, err, a.ID, n.ID())
		}
	}
	revision := func() uint64 {
		t.Helper()
		e, err := n.kv.Instances.Get(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		return e.Revision()
	}
	acked(request(a))
	registered := revision()

	release := make(chan struct{})
	holdLoop(t, n, release)
	acked(request(a)) // the loop is busy: answered by the fast path
	if got := revision(); got != registered {
		t.Errorf("revision %d after an unchanged re-announce, want %d", got, registered)
	}
	if got := n.regs.adm.fast.Get(); got != 1 {
		t.Errorf("%d announces answered by the fast path, want 1", got)
	}

	changed := a
	changed.Weight = 50
	answers := make(chan error, 2)
	for i, b := range []events.Announce{changed, a} {
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		reply := nc.NewRespInbox()
		sub, err := nc.SubscribeSync(reply)
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.PublishRequest(events.Subjects{}.Announce(b.Service), reply, data); err != nil {
			t.Fatal(err)
		}
		go func() {
			m, err := sub.NextMsg(5 * time.Second)
			if err == nil {
				if _, text, isErr := events.ReplyError(m); isErr {
					err = fmt.Errorf("answered %s", text)
				}
			}
			answers <- err
		}()
		// Each is in the queue before the next is sent.
		bustest.Eventually(t, 5*time.Second, func() error {
			if n.regs.adm.pending(key) != i+1 {
				return fmt.Errorf("announce of weight %d not queued", b.Weight)
			}
			return nil
		})
	}
	if got := n.regs.adm.pending(key); got != 2 {
		t.Fatalf("%d announces of the key queued, want the changed one and the one behind it", got)
	}
	close(release)
	for range 2 {
		if err := <-answers; err != nil {
			t.Fatal(err)
		}
	}
	if got := n.regs.adm.fast.Get(); got != 1 {
		t.Errorf("%d announces answered by the fast path, want still 1", got)
	}
	e, err := n.kv.Instances.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := events.DecodeInstanceRecord(e.Value())
	if err != nil {
		t.Fatal(err)
	}
	if rec.Weight != 100 || e.Revision() != registered+2 {
		t.Errorf("weight %d at revision %d, want 100 at %d: the changed announce, then the one after it", rec.Weight, e.Revision(), registered+2)
	}
}

// holdLoop keeps the node's loop busy until release is closed (or the
// test ends).
func holdLoop(t *testing.T, n *Node, release <-chan struct{}) {
	n.submit(t.Context(), func(ctx context.Context) {
		select {
		case <-release:
		case <-ctx.Done():
		}
	})
}

// An announce's bytes sent again on the same subject are known (counted,
// not decoded and checked again) and answered as the first was; bytes
// that failed a check are checked, and refused, every time; the same
// bytes on another service's subject are checked there, and refused.
func TestRepeatedAnnounceKnown(t *testing.T) {
	n, nc := runningNode(t, Config{})
	a := events.Announce{ID: uuid.NewString(), Service: "echo", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100}
	good, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	bad := []byte(`{"id":"` + a.ID + `","service":"echo"}`) // no endpoints
	answer := func(subject string, data []byte) (ok bool, code string) {
		t.Helper()
		m, err := nc.Request(subject, data, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var ack events.Ack
		_ = json.Unmarshal(m.Data, &ack)
		return ack.OK, m.Header.Get("Nats-Service-Error-Code")
	}
	subjects := events.Subjects{}
	tests := []struct {
		name      string
		subject   string
		data      []byte
		wantOK    bool
		wantCode  string
		wantKnown uint64
	}{
		{"first: checked and registered", subjects.Announce("echo"), good, true, "", 0},
		{"the same bytes again: known, answered alike", subjects.Announce("echo"), good, true, "", 1},
		{"and again", subjects.Announce("echo"), good, true, "", 2},
		{"invalid: refused", subjects.Announce("echo"), bad, false, "400", 2},
		{"the same invalid bytes: refused again, not known", subjects.Announce("echo"), bad, false, "400", 2},
		{"the good bytes on another service's subject: checked there and refused", subjects.Announce("other"), good, false, "400", 2},
	}
	for _, tt := range tests {
		ok, code := answer(tt.subject, tt.data)
		if ok != tt.wantOK || code != tt.wantCode {
			t.Errorf("%s: answered ok=%v code %q, want ok=%v code %q", tt.name, ok, code, tt.wantOK, tt.wantCode)
		}
		if got := n.regs.repeats.hits.Get(); got != tt.wantKnown {
			t.Errorf("%s: %d known, want %d", tt.name, got, tt.wantKnown)
		}
	}
}
