package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/member"
)

// A node too slow to read the answers that came in time does not take the
// silence for the instances': their results are void (ErrOverloaded), not
// timeouts to judge.
func TestUnreadAnswersMakeTheRoundVoid(t *testing.T) {
	s := bustest.RunServer(t)
	tnc := bustest.Connect(t, s.ClientURL())
	inc := bustest.Connect(t, s.ClientURL())
	var subjects events.Subjects
	ids := make([]string, 20)
	for i := range ids {
		ids[i] = uuid.NewString()
		if _, err := member.Respond(inc, subjects, ids[i], func() events.HeartbeatReply {
			return events.HeartbeatReply{Status: events.Passing}
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := inc.Flush(); err != nil {
		t.Fatal(err)
	}
	tr, err := NewTracker(tnc, subjects, uuid.NewString(), func() time.Duration { return 50 * time.Millisecond })
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	// A node too slow to read its answers: the inbox is handled by a
	// reader that holds the first answer until the round is over, so every
	// other one waits behind it, read off the wire but not handled. After
	// that it reads promptly.
	release := make(chan struct{})
	var first sync.Once
	slow := func(m *nats.Msg) {
		first.Do(func() { <-release })
		tr.onReply(m)
	}
	inbox := tr.sub.Subject
	if err := tr.sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if tr.sub, err = tnc.Subscribe(inbox, slow); err != nil {
		t.Fatal(err)
	}
	if err := tr.sub.SetPendingLimits(-1, -1); err != nil {
		t.Fatal(err)
	}
	results := tr.Round(context.Background(), ids)
	close(release)
	var void int
	for _, r := range results {
		switch {
		case r.Err == nil:
		case errors.Is(r.Err, ErrOverloaded) && r.Void():
			void++
		default:
			t.Errorf("%s: %v, want an answer or a void result", r.ID, r.Err)
		}
	}
	if void == 0 {
		t.Fatal("no result was void though the answers waited unread")
	}
	t.Logf("%d of %d results void", void, len(ids))

	// Read promptly again, the next round is answered in full.
	bustest.Eventually(t, 5*time.Second, func() error {
		for _, r := range tr.Round(context.Background(), ids) {
			if r.Err != nil {
				return fmt.Errorf("%s: %v", r.ID, r.Err)
			}
		}
		return nil
	})
}
