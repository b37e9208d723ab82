package discovery

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
)

// A batch of the admission queue is applied in order: new instances are
// created together, an id met twice is applied after the creates in queue
// order, an id taken under another service within the batch is refused,
// and a deregister keeps its place: after the announce before it (which
// it undoes), before the one after it.
func TestAnnounceBurst(t *testing.T) {
	n, nc, kv := idleNode(t)
	inbox, replies := replyInbox(t, nc)
	msg := func(subject string, v any) *nats.Msg {
		body, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return &nats.Msg{Subject: subject, Reply: inbox, Data: body}
	}
	announce := func(service, id string, weight int) {
		n.regs.offerAnnounce(t.Context(), msg(events.Subjects{}.Announce(service),
			events.Announce{ID: id, Service: service, Endpoints: []events.Endpoint{{Name: "say"}}, Weight: weight}))
	}
	ids := []string{uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()}
	announce("echo", ids[0], 100)
	announce("echo", ids[1], 100)
	announce("echo", ids[0], 50)     // the first id again: applied after the creates
	announce("greeter", ids[1], 100) // an id of echo's, for another service
	announce("echo", ids[2], 100)    // undone by the deregister after it
	n.regs.offerDeregister(t.Context(), msg(events.Subjects{}.Deregister("echo"), events.Deregister{ID: ids[2], Service: "echo"}))
	announce("echo", ids[3], 100) // after the deregister
	if len(n.work) != 1 {
		t.Fatalf("%d jobs queued for the loop, want one drain", len(n.work))
	}
	runWork(t, n)
	if got := n.regs.adm.pending(events.InstanceKey("echo", ids[0])); got != 0 {
		t.Errorf("%d items of a key left pending after the drain", got)
	}
	for i, want := range map[int]int{0: 50, 1: 100, 3: 100} {
		e, err := kv.Instances.Get(t.Context(), events.InstanceKey("echo", ids[i]))
		if err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
		rec, err := events.DecodeInstanceRecord(e.Value())
		if err != nil {
			t.Fatal(err)
		}
		if rec.Weight != want {
			t.Errorf("instance %d: weight %d, want %d", i, rec.Weight, want)
		}
	}
	if _, err := kv.Instances.Get(t.Context(), events.InstanceKey("greeter", ids[1])); err == nil {
		t.Error("an id of echo's was registered for greeter too")
	}
	if _, err := kv.Instances.Get(t.Context(), events.InstanceKey("echo", ids[2])); err == nil {
		t.Error("the deregister was overtaken by the announce before it")
	}
	var acks, refused int
	for range 7 {
		m, err := replies.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("after %d acks and %d refusals: %v", acks, refused, err)
		}
		if code, _, isErr := events.ReplyError(m); isErr {
			if code != events.CodeBadRequest {
				t.Errorf("refusal code %d, want 400", code)
			}
			refused++
			continue
		}
		acks++
	}
	if acks != 6 || refused != 1 {
		t.Errorf("%d acks and %d refusals, want 6 and 1", acks, refused)
	}
}

// runWork runs an idle node's work queue, as its loop would, until its
// admission queue is applied.
func runWork(t *testing.T, n *Node) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !n.regs.adm.idle() {
		select {
		case j := <-n.work:
			j.run(t.Context())
		case <-deadline:
			t.Fatal("the admission queue not applied within 10s")
		}
	}
}

// idleNode is a node on a server of its own, not running: a test drives
// its handlers itself.
func idleNode(t *testing.T) (*Node, *nats.Conn, *bus.Buckets) {
	t.Helper()
	nc := bustest.Connect(t, bustest.RunServer(t).ClientURL())
	kv := bustest.Buckets(t, nc)
	n, err := New(nc, kv, Config{})
	if err != nil {
		t.Fatal(err)
	}
	return n, nc, kv
}

// replyInbox is a reply subject and the subscription that reads what a
// node answers on it.
func replyInbox(t *testing.T, nc *nats.Conn) (string, *nats.Subscription) {
	t.Helper()
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	return inbox, sub
}

// A claim that waited its turn is not written for an instance the node no
// longer holds: by then it may be another node's.
func TestClaimSkipsReleased(t *testing.T) {
	n, _, kv := idleNode(t)
	other := uuid.NewString()
	a := events.Announce{ID: uuid.NewString(), Service: "echo", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100}
	rec := events.InstanceRecord{Announce: a, Status: events.Passing, Node: other}
	data, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := kv.Instances.Create(t.Context(), rec.Key(), data)
	if err != nil {
		t.Fatal(err)
	}
	n.owned.untrack(n.owned.adopt(rec, rev, n.ID())) // adopted, then released before its claim
	n.records.claim(t.Context())
	e, err := kv.Instances.Get(t.Context(), rec.Key())
	if err != nil {
		t.Fatal(err)
	}
	got, err := events.DecodeInstanceRecord(e.Value())
	if err != nil {
		t.Fatal(err)
	}
	if got.Node != other || e.Revision() != rev {
		t.Errorf("record after the claim: node %s at revision %d, want %s at %d untouched", got.Node, e.Revision(), other, rev)
	}
}

// A batch's KV creates are written off the loop: the drain returns before
// they are written, leaving the loop free for a round's judgement, and
// the batch is applied (registered, answered, done) when they come back
// through the work queue.
func TestCreatesOffTheLoop(t *testing.T) {
	n, nc, _ := idleNode(t)
	inbox, replies := replyInbox(t, nc)
	const count = 50
	for range count {
		id := uuid.NewString()
		body, err := json.Marshal(events.Announce{ID: id, Service: "echo", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100})
		if err != nil {
			t.Fatal(err)
		}
		n.regs.offerAnnounce(t.Context(), &nats.Msg{Subject: events.Subjects{}.Announce("echo"), Reply: inbox, Data: body})
	}
	drain := <-n.work
	drain.run(t.Context())
	if n.regs.adm.idle() {
		t.Fatal("the batch was applied before the drain returned: its creates held the loop")
	}
	runWork(t, n)
	if got := n.Registry().Len(); got != count {
		t.Errorf("%d registered, want %d", got, count)
	}
	for i := range count {
		m, err := replies.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if _, text, isErr := events.ReplyError(m); isErr {
			t.Errorf("answer %d: %s", i, text)
		}
	}
}
