package member_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/member"
)

func TestResponderLastBeat(t *testing.T) {
	s := bustest.RunServer(t)
	nc := bustest.Connect(t, s.ClientURL())
	id := uuid.NewString()
	r, err := member.Respond(nc, events.Subjects{}, id, func() events.HeartbeatReply { return events.HeartbeatReply{} })
	if err != nil {
		t.Fatal(err)
	}
	if !r.LastBeat().IsZero() {
		t.Fatal("LastBeat set before any beat")
	}
	before := time.Now()
	msg, err := nc.Request(events.Subjects{}.Heartbeat(id), []byte(`{"node":"x","seq":1}`), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	reply, err := events.DecodeHeartbeatReply(msg.Data)
	if err != nil || reply.ID != id {
		t.Fatalf("reply %s: %v", msg.Data, err)
	}
	if r.LastBeat().Before(before) {
		t.Errorf("LastBeat %v not updated", r.LastBeat())
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Request(events.Subjects{}.Heartbeat(id), nil, time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("after Stop: %v, want no responders", err)
	}
}
