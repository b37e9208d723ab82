package discovery

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
)

// A node whose work queue is deep answers an announce at once with a 503
// that says to retry later, and counts it, instead of queueing it past the
// sender's timeout; below the mark it takes it.
func TestAnnounceShedWhenBusy(t *testing.T) {
	n, nc, _ := idleNode(t)
	inbox, replies := replyInbox(t, nc)
	m := &nats.Msg{Subject: events.Subjects{}.Announce("echo"), Reply: inbox, Data: []byte("{}")}
	for range shedAt - 1 {
		n.work <- job{run: func(context.Context) {}}
	}
	if n.regs.shed(m) {
		t.Fatalf("shed with %d queued, below the mark", len(n.work))
	}
	n.work <- job{run: func(context.Context) {}}
	if !n.regs.shed(m) {
		t.Fatalf("not shed with %d queued", len(n.work))
	}
	r, err := replies.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	code, text, isErr := events.ReplyError(r)
	if !isErr || code != events.CodeUnavailable || !strings.Contains(text, "retry later") {
		t.Errorf("shed answer %d %q, want a 503 saying to retry later", code, text)
	}
	var b strings.Builder
	n.m.set.WritePrometheus(&b)
	if !strings.Contains(b.String(), `hail_discovery_rejected_total{reason="busy"} 1`) {
		t.Error("the shed announce is not counted")
	}
}
