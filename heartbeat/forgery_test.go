package heartbeat_test

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/heartbeat"
)

// An instance sees its own heartbeat's reply subject. Answers it forges
// from it for another instance (that instance's index in its place, with
// its own key or none) do not count: the silent instance times out.
func TestForgedAnswersDoNotCount(t *testing.T) {
	s := bustest.RunServer(t)
	tnc := bustest.Connect(t, s.ClientURL())
	inc := bustest.Connect(t, s.ClientURL())
	ids := newIDs(2) // 0 forges for 1, which is silent
	forge := func(m *nats.Msg) {
		var hb events.Heartbeat
		if err := json.Unmarshal(m.Data, &hb); err != nil {
			t.Errorf("heartbeat %s: %v", m.Data, err)
			return
		}
		tokens := strings.Split(m.Reply, ".")
		seq := strconv.FormatUint(hb.Seq, 10)
		for i, tok := range tokens[:len(tokens)-1] {
			if tok != seq || tokens[i+1] != "0" {
				continue
			}
			other := append(append([]string(nil), tokens[:i+1]...), "1")
			for _, forged := range []string{strings.Join(other, "."), strings.Join(append(other, tokens[i+2:]...), ".")} {
				_ = inc.Publish(forged, []byte(`{"id":"`+ids[1]+`","status":"passing"}`))
				_ = inc.Publish(forged, nil)
			}
		}
		_ = m.Respond([]byte(`{"id":"` + ids[0] + `","status":"passing"}`))
	}
	tr := trackAnswers(t, tnc, inc, ids, 300*time.Millisecond, forge, func(*nats.Msg) {})
	for range 3 {
		results := tr.Round(t.Context(), ids)
		if results[0].Err != nil {
			t.Fatalf("the forger's own answer: %v", results[0].Err)
		}
		if !errors.Is(results[1].Err, heartbeat.ErrTimeout) {
			t.Fatalf("the silent instance: %+v, want a timeout", results[1])
		}
	}
}

// An error reply (a node's 400 with its headers, or only its payload) is
// not an answer.
func TestErrorReplyIsNoAnswer(t *testing.T) {
	s := bustest.RunServer(t)
	tnc := bustest.Connect(t, s.ClientURL())
	inc := bustest.Connect(t, s.ClientURL())
	ids := newIDs(2)
	tr := trackAnswers(t, tnc, inc, ids, 2*time.Second, func(m *nats.Msg) {
		_ = m.RespondMsg(events.ErrorMsg(events.CodeBadRequest, "announce: invalid: id is required"))
	}, func(m *nats.Msg) {
		_ = m.Respond([]byte(`{"ok":false,"error":"announce: invalid: id is required","code":400}`))
	})
	for i, r := range tr.Round(t.Context(), ids) {
		if !errors.Is(r.Err, heartbeat.ErrBadReply) {
			t.Errorf("reply %d: %+v, want a bad reply", i, r)
		}
	}
}

// A hostile instance's check output over 4 KiB makes its reply no answer:
// the contract's bound holds on discovery's side too.
func TestOverlongCheckOutputIsNoAnswer(t *testing.T) {
	s := bustest.RunServer(t)
	tnc := bustest.Connect(t, s.ClientURL())
	inc := bustest.Connect(t, s.ClientURL())
	ids := newIDs(1)
	reply, err := json.Marshal(events.HeartbeatReply{ID: ids[0], Status: events.Passing, Checks: []events.CheckResult{
		{Name: "health", Kind: events.CheckHTTP, Status: events.Passing, Output: strings.Repeat("x", events.MaxCheckOutput+1)}}})
	if err != nil {
		t.Fatal(err)
	}
	tr := trackAnswers(t, tnc, inc, ids, 2*time.Second, func(m *nats.Msg) { _ = m.Respond(reply) })
	if r := tr.Round(t.Context(), ids)[0]; !errors.Is(r.Err, heartbeat.ErrBadReply) {
		t.Errorf("a reply with %d characters of output: %+v, want a bad reply", events.MaxCheckOutput+1, r.Err)
	}
}

// trackAnswers subscribes answers[i] on inc to the heartbeats of ids[i],
// and returns a tracker on tnc that waits timeout for them.
func trackAnswers(t *testing.T, tnc, inc *nats.Conn, ids []string, timeout time.Duration, answers ...nats.MsgHandler) *heartbeat.Tracker {
	t.Helper()
	var subjects events.Subjects
	for i, answer := range answers {
		if _, err := inc.Subscribe(subjects.Heartbeat(ids[i]), answer); err != nil {
			t.Fatal(err)
		}
	}
	inc.Flush()
	tr, err := heartbeat.NewTracker(tnc, subjects, "node", fixed(timeout))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}
