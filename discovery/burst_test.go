package discovery

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
)

// A burst of announces is taken as one: new instances are created
// together, an id met twice is applied after the creates in queue order,
// an id taken under another service within the burst is refused, a
// registry change met on the way runs at once, and the first other job
// ends the burst and comes back to run after it, with what follows it
// still queued.
func TestAnnounceBurst(t *testing.T) {
	n, nc, kv := idleNode(t)
	inbox, replies := replyInbox(t, nc)
	announce := func(service, id string, weight int) job {
		a := events.Announce{ID: id, Service: service, Endpoints: []events.Endpoint{{Name: "say"}}, Weight: weight}
		body, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		return job{announce: &nats.Msg{Subject: events.Subjects{}.Announce(service), Reply: inbox, Data: body}, queued: time.Now()}
	}
	ids := []string{uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()}
	var changed, other bool
	for _, j := range []job{
		announce("echo", ids[1], 100),
		announce("echo", ids[0], 50), // the first id again: applied after the creates
		{change: true, run: func(context.Context) { changed = true }},
		announce("greeter", ids[1], 100), // an id of echo's, for another service
		announce("echo", ids[2], 100),
		{run: func(context.Context) { other = true }},
		announce("echo", ids[3], 100), // after the other job: not this burst's
	} {
		n.work <- j
	}
	next := n.regs.burst(t.Context(), announce("echo", ids[0], 100))
	if !changed {
		t.Error("the registry change met in the burst did not run")
	}
	if next.run == nil || next.announce != nil {
		t.Fatalf("burst returned %+v, want the other job", next)
	}
	if next.run(t.Context()); !other {
		t.Error("the returned job is not the other job")
	}
	if len(n.work) != 1 {
		t.Errorf("%d jobs left queued, want the announce after the other job", len(n.work))
	}
	for i, want := range []int{50, 100, 100} {
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
	if _, err := kv.Instances.Get(t.Context(), events.InstanceKey("echo", ids[3])); err == nil {
		t.Error("an announce queued after the other job was taken in the burst")
	}
	var acks, refused int
	for range 5 {
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
	if acks != 4 || refused != 1 {
		t.Errorf("%d acks and %d refusals, want 4 and 1", acks, refused)
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
