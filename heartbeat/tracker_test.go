package heartbeat_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/heartbeat"
	"github.com/hailsd/hail/member"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

func newIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	return ids
}

func TestRoundOutcomes(t *testing.T) {
	s := bustest.RunServer(t)
	tnc := bustest.Connect(t, s.ClientURL())
	inc := bustest.Connect(t, s.ClientURL())
	var subjects events.Subjects
	ids := newIDs(4) // 0 answers, 1 reports warning, 2 hangs, 3 absent
	node := uuid.NewString()

	var seen sync.Map
	_, err := member.Respond(inc, subjects, ids[0], func() events.HeartbeatReply {
		return events.HeartbeatReply{Status: events.Passing, Inflight: 2, Capacity: 8}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := member.Respond(inc, subjects, ids[1], func() events.HeartbeatReply {
		return events.HeartbeatReply{Status: events.Warning}
	}); err != nil {
		t.Fatal(err)
	}
	// A subscriber that never answers, and records the beat it saw.
	if _, err := inc.Subscribe(subjects.Heartbeat(ids[2]), func(m *nats.Msg) {
		var hb events.Heartbeat
		if err := events.Decode("heartbeat", m.Data, &hb); err == nil {
			seen.Store("hb", hb)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := inc.Flush(); err != nil {
		t.Fatal(err)
	}

	tr, err := heartbeat.NewTracker(tnc, subjects, node, fixed(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	results := tr.Round(t.Context(), ids)
	if len(results) != len(ids) {
		t.Fatalf("%d results for %d ids", len(results), len(ids))
	}
	for i, r := range results {
		if r.ID != ids[i] {
			t.Errorf("result %d is for %s, want %s", i, r.ID, ids[i])
		}
	}
	if r := results[0]; r.Err != nil || r.Reply.Inflight != 2 || r.Reply.Capacity != 8 || r.Reply.Status != events.Passing {
		t.Errorf("answering instance: %+v", r)
	}
	if r := results[1]; r.Err != nil || r.Verdict() != (heartbeat.Verdict{Answered: true, Reported: events.Warning}) {
		t.Errorf("warning instance: %+v", r)
	}
	if r := results[2]; !errors.Is(r.Err, heartbeat.ErrTimeout) {
		t.Errorf("hanging instance: %+v, want timeout", r)
	}
	if r := results[3]; !errors.Is(r.Err, heartbeat.ErrNoResponders) {
		t.Errorf("absent instance: %+v, want no responders", r)
	}
	v, ok := seen.Load("hb")
	if !ok {
		t.Fatal("hanging instance saw no heartbeat")
	}
	if hb := v.(events.Heartbeat); hb.Node != node || hb.Seq == 0 {
		t.Errorf("heartbeat = %+v", hb)
	}
}

// A slow instance must not delay the answer of the others: the round ends
// as soon as everyone who will answer has, and the others' RTTs are short.
func TestSlowInstanceDoesNotDelayOthers(t *testing.T) {
	s := bustest.RunServer(t)
	tnc := bustest.Connect(t, s.ClientURL())
	inc := bustest.Connect(t, s.ClientURL())
	slowNC := bustest.Connect(t, s.ClientURL())
	var subjects events.Subjects
	ids := newIDs(50)
	release := make(chan struct{})
	for _, id := range ids[1:] {
		if _, err := member.Respond(inc, subjects, id, func() events.HeartbeatReply { return events.HeartbeatReply{} }); err != nil {
			t.Fatal(err)
		}
	}
	// The slow one answers only when released, after the round is over.
	if _, err := slowNC.Subscribe(subjects.Heartbeat(ids[0]), func(m *nats.Msg) {
		<-release
		m.Respond([]byte(`{"status":"passing"}`))
	}); err != nil {
		t.Fatal(err)
	}
	defer close(release)
	inc.Flush()
	slowNC.Flush()
	tr, err := heartbeat.NewTracker(tnc, subjects, uuid.NewString(), fixed(400*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	results := tr.Round(t.Context(), ids)
	if !errors.Is(results[0].Err, heartbeat.ErrTimeout) {
		t.Errorf("slow instance: %+v", results[0])
	}
	for _, r := range results[1:] {
		if r.Err != nil {
			t.Fatalf("instance %s: %v", r.ID, r.Err)
		}
		// Each fast answer was collected on arrival, not at the round's end.
		if r.RTT >= 400*time.Millisecond {
			t.Fatalf("fast instance RTT %v reached the slow one's timeout", r.RTT)
		}
	}
}

func TestBareReplyCountsAsAnswered(t *testing.T) {
	s := bustest.RunServer(t)
	tnc := bustest.Connect(t, s.ClientURL())
	inc := bustest.Connect(t, s.ClientURL())
	ids := newIDs(2)
	inc.Subscribe(events.Subjects{}.Heartbeat(ids[0]), func(m *nats.Msg) { m.Respond(nil) })
	inc.Subscribe(events.Subjects{}.Heartbeat(ids[1]), func(m *nats.Msg) { m.Respond([]byte("{}")) })
	inc.Flush()
	tr, err := heartbeat.NewTracker(tnc, events.Subjects{}, uuid.NewString(), fixed(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	for i, r := range tr.Round(t.Context(), ids) {
		if r.Err != nil || r.Verdict() != (heartbeat.Verdict{Answered: true, Reported: events.Passing}) && r.Verdict() != (heartbeat.Verdict{Answered: true}) {
			t.Errorf("result %d: %+v, want answered", i, r)
		}
	}
}

func TestBadReplies(t *testing.T) {
	s := bustest.RunServer(t)
	tnc := bustest.Connect(t, s.ClientURL())
	inc := bustest.Connect(t, s.ClientURL())
	var subjects events.Subjects
	ids := newIDs(2)
	inc.Subscribe(subjects.Heartbeat(ids[0]), func(m *nats.Msg) { m.Respond([]byte("not json")) })
	inc.Subscribe(subjects.Heartbeat(ids[1]), func(m *nats.Msg) {
		m.Respond(fmt.Appendf(nil, `{"id":%q,"status":"passing"}`, ids[0]))
	})
	inc.Flush()
	tr, err := heartbeat.NewTracker(tnc, subjects, uuid.NewString(), fixed(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	for i, r := range tr.Round(t.Context(), ids) {
		if !errors.Is(r.Err, heartbeat.ErrBadReply) {
			t.Errorf("result %d: %v, want bad reply", i, r.Err)
		}
	}
}

// BenchmarkFanOut measures one heartbeat round over n instances answering
// from another connection on an embedded server: the tracker's single
// inbox against the plain NATS way, one concurrent Request per instance.
// tracker-unrestricted is the tracker again on a server whose users have
// no publish permissions: hail's accounts deny every user publish on
// $SYS.> (PROTOCOL v1.4), and nats-server checks a client's every
// publish against its permissions, caching the answer for 128 subjects.
// A round's subjects (one heartbeat subject per instance, one reply
// subject per heartbeat) miss that cache every time, so the two side by
// side are what the deny costs the heartbeats.
//
//	go test -run '^$' -bench FanOut -benchtime 3s ./heartbeat/
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{100, 1000} {
		ids := newIDs(n)
		for _, srv := range []struct {
			name      string
			configure func(*server.Options)
		}{
			{"tracker", nil},
			// An account of its own leaves hail's defaults out: clients
			// without credentials land in the global account, unrestricted.
			{"tracker-unrestricted", func(o *server.Options) { o.Accounts = []*server.Account{server.NewAccount("BENCH")} }},
		} {
			tnc, inc := fanOutServer(b, srv.configure)
			answerAll(b, inc, ids)
			b.Run(fmt.Sprintf("%s/instances=%d", srv.name, n), func(b *testing.B) {
				tr, err := heartbeat.NewTracker(tnc, events.Subjects{}, uuid.NewString(), fixed(5*time.Second))
				if err != nil {
					b.Fatal(err)
				}
				defer tr.Close()
				b.ReportAllocs()
				for b.Loop() {
					for _, r := range tr.Round(b.Context(), ids) {
						if r.Err != nil {
							b.Fatal(r.Err)
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/instance")
			})
		}
		tnc, inc := fanOutServer(b, nil)
		answerAll(b, inc, ids)
		b.Run(fmt.Sprintf("plain_requests/instances=%d", n), func(b *testing.B) {
			payload := []byte(`{"node":"bench","seq":1}`)
			b.ReportAllocs()
			for b.Loop() {
				var wg sync.WaitGroup
				for _, id := range ids {
					wg.Go(func() {
						if _, err := tnc.Request(events.Subjects{}.Heartbeat(id), payload, 5*time.Second); err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/instance")
		})
	}
}

// fanOutServer starts a server (configure as bustest.RunServerWith) and
// connects the tracker's side and the instances' side to it.
func fanOutServer(tb testing.TB, configure func(*server.Options)) (tracker, instances *nats.Conn) {
	s := bustest.RunServerWith(tb, configure)
	return bustest.Connect(tb, s.ClientURL()), bustest.Connect(tb, s.ClientURL())
}

// answerAll has every id answer heartbeats as passing on nc.
func answerAll(tb testing.TB, nc *nats.Conn, ids []string) {
	answerEach(tb, nc, ids, func(int, string) {})
}

// answerEach has every id answer heartbeats as passing on nc, calling
// seen with its index and id as it answers.
func answerEach(tb testing.TB, nc *nats.Conn, ids []string, seen func(i int, id string)) {
	tb.Helper()
	for i, id := range ids {
		if _, err := member.Respond(nc, events.Subjects{}, id, func() events.HeartbeatReply {
			seen(i, id)
			return events.HeartbeatReply{Status: events.Passing}
		}); err != nil {
			tb.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		tb.Fatal(err)
	}
}

// While the tracker's own server is gone, silence is the tracker's fault:
// results say so and are void, not timeouts.
func TestRoundWhileDisconnectedIsVoid(t *testing.T) {
	s := bustest.RunServer(t)
	tnc := bustest.Connect(t, s.ClientURL(), nats.MaxReconnects(-1))
	ids := newIDs(3)
	tr, err := heartbeat.NewTracker(tnc, events.Subjects{}, uuid.NewString(), fixed(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	s.Shutdown()
	s.WaitForShutdown()
	bustest.Eventually(t, 5*time.Second, func() error {
		if tnc.IsConnected() {
			return errors.New("still connected")
		}
		return nil
	})
	for _, r := range tr.Round(t.Context(), ids) {
		if !errors.Is(r.Err, heartbeat.ErrDisconnected) || !r.Void() {
			t.Errorf("result %+v, want void", r)
		}
		if r.Verdict() != (heartbeat.Verdict{}) {
			t.Errorf("verdict of a void result: %+v", r.Verdict())
		}
	}
}

// fixed is a timeout that never changes.
func fixed(d time.Duration) func() time.Duration { return func() time.Duration { return d } }

// An answer that comes after its round's timeout is not lost: the next
// round's result for the instance, if not an answer, carries the status
// it reported. One answered in time, or two rounds late, carries nothing.
func TestLateAnswerCarriedToNextRound(t *testing.T) {
	s := bustest.RunServer(t)
	tnc := bustest.Connect(t, s.ClientURL())
	inc := bustest.Connect(t, s.ClientURL())
	var subjects events.Subjects
	ids := newIDs(2) // 0 answers late, 1 never
	held := make(chan *nats.Msg, 4)
	for _, id := range ids {
		if _, err := inc.Subscribe(subjects.Heartbeat(id), func(m *nats.Msg) {
			if m.Subject == subjects.Heartbeat(ids[0]) {
				held <- m
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := inc.Flush(); err != nil {
		t.Fatal(err)
	}
	tr, err := heartbeat.NewTracker(tnc, subjects, uuid.NewString(), fixed(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	answer := func(m *nats.Msg) {
		t.Helper()
		if err := m.Respond([]byte(`{"id":"` + ids[0] + `","status":"warning"}`)); err != nil {
			t.Fatal(err)
		}
		if err := inc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	first := tr.Round(t.Context(), ids)
	for i, r := range first {
		if !errors.Is(r.Err, heartbeat.ErrTimeout) || r.Late != "" {
			t.Fatalf("round 1, instance %d: %+v, want a timeout and nothing late", i, r)
		}
	}
	answer(<-held) // round 1's heartbeat, answered after its timeout
	// The late answer is read while round 2 waits its timeout out: the
	// second instance never answers.
	second := tr.Round(t.Context(), ids)
	if r := second[0]; !errors.Is(r.Err, heartbeat.ErrTimeout) || r.Late != events.Warning {
		t.Errorf("round 2, late instance: %+v, want a timeout with late warning", r)
	}
	if r := second[1]; r.Late != "" {
		t.Errorf("round 2, silent instance: %+v, want nothing late", r)
	}
	<-held      // round 2's heartbeat, never answered
	go func() { // round 3's, answered in time
		m := <-held
		_ = m.Respond([]byte(`{"id":"` + ids[0] + `","status":"passing"}`))
	}()
	third := tr.Round(t.Context(), ids)
	if r := third[0]; r.Err != nil || r.Late != "" {
		t.Errorf("round 3, answered in time: %+v", r)
	}
	if r := third[1]; r.Late != "" {
		t.Errorf("round 3, silent instance: %+v, want nothing late", r)
	}
}

// An answer the same as the instance's last is not decoded again, but one
// that differs is: every round reports what the instance said in it.
func TestChangedAnswerReadAnew(t *testing.T) {
	s := bustest.RunServer(t)
	tnc := bustest.Connect(t, s.ClientURL())
	inc := bustest.Connect(t, s.ClientURL())
	id := uuid.NewString()
	says := []events.Status{events.Passing, events.Passing, events.Warning, events.Warning, events.Passing}
	var beat int
	if _, err := member.Respond(inc, events.Subjects{}, id, func() events.HeartbeatReply {
		st := says[min(beat, len(says)-1)]
		beat++
		return events.HeartbeatReply{Status: st}
	}); err != nil {
		t.Fatal(err)
	}
	if err := inc.Flush(); err != nil {
		t.Fatal(err)
	}
	tr, err := heartbeat.NewTracker(tnc, events.Subjects{}, uuid.NewString(), fixed(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	for i, want := range says {
		r := tr.Round(t.Context(), []string{id})[0]
		if r.Err != nil || r.Reply.Status != want || r.Reply.ID != id {
			t.Errorf("round %d: %+v, want %s from %s", i+1, r, want, id)
		}
	}
}

// A paced round sends its beats paceChunk at a time over up to half its
// timeout: every instance answers, the last chunk goes out no sooner than
// its turn (so the round lasts at least the spread), and each answer is
// timed from its own chunk's sending, not the round's start.
func TestPacedRound(t *testing.T) {
	tnc, inc := fanOutServer(t, nil)
	ids := newIDs(1200) // three chunks
	var mu sync.Mutex
	heard := map[string]time.Time{}
	answerEach(t, inc, ids, func(_ int, id string) {
		mu.Lock()
		heard[id] = time.Now()
		mu.Unlock()
	})
	tr, err := heartbeat.NewTracker(tnc, events.Subjects{}, uuid.NewString(), fixed(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	// 1,200 beats at 2,000 a second: 600 ms, under half the timeout, so
	// the chunks go out 300 ms apart.
	const spread = 600 * time.Millisecond
	tr.Pace(2000)
	start := time.Now()
	results := tr.Round(t.Context(), ids)
	for i, r := range results {
		if r.Err != nil {
			t.Fatalf("result %d: %v", i, r.Err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	last := heard[ids[len(ids)-1]]
	if got := last.Sub(start); got < spread {
		t.Errorf("the last chunk answered %v after the round began, want no sooner than the spread %v", got, spread)
	}
	// The last chunk's answers are timed from its sending, 600 ms after
	// the first's: their RTTs are shorter than the time since the start
	// by more than a gap (300 ms).
	if rtt, since := results[len(ids)-1].RTT, last.Sub(start); rtt >= since-spread/2 {
		t.Errorf("last beat's RTT %v, want it timed from its chunk (it answered %v after the round began)", rtt, since)
	}
}

// A paced round whose context ends while chunks wait to be sent returns
// then, without sending the rest.
func TestPacedRoundStopsWithItsContext(t *testing.T) {
	tnc, inc := fanOutServer(t, nil)
	ids := newIDs(1200)
	first := make(chan struct{})
	var once sync.Once
	answerEach(t, inc, ids, func(int, string) { once.Do(func() { close(first) }) })
	tr, err := heartbeat.NewTracker(tnc, events.Subjects{}, uuid.NewString(), fixed(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	tr.Pace(1) // the second chunk would wait ten minutes
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tr.Round(ctx, ids)
	}()
	select {
	case <-first:
	case <-time.After(30 * time.Second):
		t.Fatal("no answer to the first chunk in 30s")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the round did not return once its context ended")
	}
	if sent := tnc.Stats().OutMsgs; sent > 512 {
		t.Errorf("%d beats sent, want the first chunk's 512 alone", sent)
	}
}

// Each chunk of a paced round has the timeout from its own sending: an
// answer to the first chunk that comes after it (but before the round
// ends, the spread later) is late, as one to the last chunk would be, not
// an answer in time.
func TestPacedChunkTimesOut(t *testing.T) {
	tnc, inc := fanOutServer(t, nil)
	ids := newIDs(1024) // two chunks
	const timeout = time.Second
	// The first chunk's deadline is 1 s after the round starts, the
	// round's end 1.5 s (the spread, half the timeout, then the
	// timeout): the slow instance answers midway, 1.25 s after its beat.
	const slowBy = 1250 * time.Millisecond
	slow := ids[0]
	answerEach(t, inc, ids, func(_ int, id string) {
		if id == slow {
			time.Sleep(slowBy) // an instance slow to answer, not a wait for the test
		}
	})
	tr, err := heartbeat.NewTracker(tnc, events.Subjects{}, uuid.NewString(), fixed(timeout))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	tr.Pace(1) // the spread is its bound, half the timeout
	results := tr.Round(t.Context(), ids)
	if !errors.Is(results[0].Err, heartbeat.ErrTimeout) {
		t.Errorf("the first chunk's slow answer: %+v, want a timeout (it came %v after its beat, the timeout %v)", results[0], slowBy, timeout)
	}
	for i, r := range results[1:] {
		if r.Err != nil {
			t.Fatalf("result %d: %v", i+1, r.Err)
		}
	}
}
