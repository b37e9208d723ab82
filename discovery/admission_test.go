package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/roles"
)

// A burst of announces past the admission bound, while the node's loop is
// busy: the first answerMax are admitted and answered when applied; the
// next, up to the hold, are answered at once with a 503 whose
// retry_after_ms is within bounds, and still registered in their turn
// without being sent again (as for a v1 client that ignores the 503);
// beyond the hold they are refused, and registered when sent again (as
// the SDK does after retry_after_ms). Nothing is lost, and the admission
// counters say what happened.
func TestAnnounceAdmission(t *testing.T) {
	tests := []struct {
		name                   string
		answer, hold, burst    int
		deferred, refusedFirst int
	}{
		{"within the hold: deferred, registered without a resend", 8, 1000, 50, 42, 0},
		{"beyond the hold: refused, registered when sent again", 8, 20, 50, 12, 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, nc := runningNode(t, Config{})
			q := n.regs.adm
			q.mu.Lock()
			q.answerMax, q.holdMax = tt.answer, tt.hold
			q.mu.Unlock()

			// Answers by announce number, from the reply subject's last
			// token.
			inbox := nc.NewInbox()
			var mu sync.Mutex
			answers := map[int][]*nats.Msg{}
			sub, err := nc.Subscribe(inbox+".*", func(m *nats.Msg) {
				i, _ := strconv.Atoi(m.Subject[strings.LastIndexByte(m.Subject, '.')+1:])
				mu.Lock()
				answers[i] = append(answers[i], m)
				mu.Unlock()
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sub.Unsubscribe() })
			busyAnswers := func() (busy []int) {
				mu.Lock()
				defer mu.Unlock()
				for i, ms := range answers {
					if code, _, isErr := events.ReplyError(ms[len(ms)-1]); isErr && code == events.CodeUnavailable {
						busy = append(busy, i)
					}
				}
				return busy
			}

			// The loop is held busy until the burst is queued.
			release := make(chan struct{})
			holdLoop(t, n, release)
			ids := make([]string, tt.burst)
			send := func(i int) {
				a := events.Announce{ID: ids[i], Service: "echo", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100}
				data, err := json.Marshal(a)
				if err != nil {
					t.Fatal(err)
				}
				if err := nc.PublishRequest(events.Subjects{}.Announce("echo"), inbox+"."+strconv.Itoa(i), data); err != nil {
					t.Fatal(err)
				}
			}
			for i := range ids {
				ids[i] = uuid.NewString()
				send(i)
			}
			bustest.Eventually(t, 10*time.Second, func() error {
				if got, want := len(busyAnswers()), tt.deferred+tt.refusedFirst; got != want {
					return fmt.Errorf("%d answered 503 while the loop is busy, want %d", got, want)
				}
				return nil
			})
			mu.Lock()
			for i, ms := range answers {
				var body events.ErrorBody
				if err := json.Unmarshal(ms[0].Data, &body); err != nil {
					t.Fatalf("answer %d: %v", i, err)
				}
				if after := time.Duration(body.RetryAfterMS) * time.Millisecond; after < minRetryAfter || after > maxRetryAfter {
					t.Errorf("answer %d: retry_after_ms %d, want within [%v, %v]", i, body.RetryAfterMS, minRetryAfter, maxRetryAfter)
				}
				if i < tt.answer {
					t.Errorf("announce %d, within the bound, answered %s", i, ms[0].Data)
				}
			}
			mu.Unlock()
			// The burst, as counted while the loop is still busy.
			var b strings.Builder
			n.m.set.WritePrometheus(&b)
			for o, want := range map[outcome]int{admitted: tt.answer, deferred: tt.deferred, refused: tt.refusedFirst} {
				line := fmt.Sprintf(`hail_discovery_admission_total{outcome=%q} %d`, o, want)
				if !strings.Contains(b.String(), line+"\n") {
					t.Errorf("metrics lack %s", line)
				}
			}
			close(release)

			registered := func() (missing []int) {
				for i, id := range ids {
					if _, ok := n.Registry().Get(events.InstanceKey("echo", id)); !ok {
						missing = append(missing, i)
					}
				}
				return missing
			}
			bustest.Eventually(t, 10*time.Second, func() error {
				if missing := registered(); len(missing) != tt.refusedFirst {
					return fmt.Errorf("%d not registered, want the %d refused", len(missing), tt.refusedFirst)
				}
				return nil
			})
			// The refused come back, as the SDK does after retry_after_ms,
			// until taken.
			bustest.Eventually(t, 10*time.Second, func() error {
				missing := registered()
				for _, i := range missing {
					send(i)
				}
				if len(missing) > 0 {
					return fmt.Errorf("%d of %d not registered: lost", len(missing), tt.burst)
				}
				return nil
			})
			bustest.Eventually(t, 10*time.Second, func() error {
				mu.Lock()
				defer mu.Unlock()
				for i := range tt.answer {
					if len(answers[i]) != 1 {
						return fmt.Errorf("admitted announce %d: %d answers", i, len(answers[i]))
					}
					if _, _, isErr := events.ReplyError(answers[i][0]); isErr {
						return fmt.Errorf("admitted announce %d answered %s", i, answers[i][0].Data)
					}
				}
				return nil
			})
		})
	}
}

// retry_after_ms is the time the queue ahead takes at the measured pace,
// within its bounds.
func TestRetryAfter(t *testing.T) {
	tests := []struct {
		rate  float64
		ahead int
		want  time.Duration
	}{
		{1000, 500, 500 * time.Millisecond},
		{1000, 1, minRetryAfter},
		{100, 1_000_000, maxRetryAfter},
		{4000, 8000, 2 * time.Second},
	}
	for _, tt := range tests {
		q := &admission{rate: tt.rate}
		if got := q.retryAfter(tt.ahead); got != tt.want {
			t.Errorf("rate %v/s, %d ahead: %v, want %v", tt.rate, tt.ahead, got, tt.want)
		}
	}
}

// runningNode is a node on a server of its own, running until the test
// ends, and the test's connection to that server.
func runningNode(t *testing.T, cfg Config) (*Node, *nats.Conn) {
	t.Helper()
	url := bustest.RunServer(t).ClientURL()
	nc := bustest.Connect(t, url)
	kv := bustest.Buckets(t, nc)
	n, err := New(bustest.Connect(t, url), kv, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node: %v", err)
		}
	})
	select {
	case <-n.Serving():
	case err := <-done:
		done <- err // for the cleanup, which waits on it
		t.Fatalf("node stopped before serving: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("node not serving within 10s")
	}
	return n, nc
}

// An announce the same as the one of its instance queued last is not
// queued again (a client that announces again while it waits adds
// nothing); a changed one is, and so is one queued behind a deregister.
func TestAnnounceCoalesced(t *testing.T) {
	a := events.Announce{ID: uuid.NewString(), Service: "echo", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100}
	changed := a
	changed.Weight = 50
	key := events.InstanceKey(a.Service, a.ID)
	announce := func(a events.Announce) queued {
		return queued{m: &nats.Msg{Subject: "hail.announce.echo"}, key: key, a: a}
	}
	dereg := queued{m: &nats.Msg{Subject: "hail.deregister.echo"}, key: key, dereg: &events.Deregister{ID: a.ID, Service: a.Service}}
	tests := []struct {
		name   string
		offers []queued
		want   []outcome
		queued int
	}{
		{"the same twice", []queued{announce(a), announce(a)}, []outcome{admitted, deferred}, 1},
		{"changed", []queued{announce(a), announce(changed), announce(changed)}, []outcome{admitted, admitted, deferred}, 2},
		{"back to the first", []queued{announce(a), announce(changed), announce(a)}, []outcome{admitted, admitted, admitted}, 3},
		{"after a deregister", []queued{announce(a), dereg, announce(a)}, []outcome{admitted, admitted, admitted}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newAdmission(metrics.NewSet())
			for i, it := range tt.offers {
				if o, _, _ := q.offer(it, time.Now()); o != tt.want[i] {
					t.Errorf("offer %d: %s, want %s", i, o, tt.want[i])
				}
			}
			if got := q.pending(key); got != tt.queued {
				t.Errorf("%d queued, want %d", got, tt.queued)
			}
			if got := len(q.take(maxBurst)); got != tt.queued {
				t.Errorf("took %d, want %d", got, tt.queued)
			}
		})
	}
}

// An instance whose announce waits in the queue is held: heartbeated at
// the first look after it is queued, then once every interval since it
// last heard from the node, at its scoped or unscoped target, and at the
// next look again once it announces the same again (it heard nothing);
// not once its items are taken to be applied, nor if it is registered
// (its owner beats it) or its last item is a deregister.
func TestAdmissionHeld(t *testing.T) {
	const every = time.Second
	t0 := time.Unix(1_700_000_000, 0)
	a := events.Announce{ID: uuid.NewString(), Service: "echo", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100}
	scoped := a
	scoped.ID, scoped.Scoped = uuid.NewString(), true
	announce := func(a events.Announce) queued {
		return queued{m: &nats.Msg{Subject: "hail.announce.echo"}, key: events.InstanceKey(a.Service, a.ID), a: a, hold: true}
	}
	registered := func(a events.Announce) queued {
		it := announce(a)
		it.hold = false
		return it
	}
	dereg := func(a events.Announce) queued {
		return queued{m: &nats.Msg{Subject: "hail.deregister.echo"}, key: events.InstanceKey(a.Service, a.ID), dereg: &events.Deregister{ID: a.ID, Service: a.Service}}
	}
	type step struct {
		at   time.Duration // after t0
		want []string
	}
	tests := []struct {
		name   string
		offers []queued
		// again, when set, offers the first item again at 2*every.
		again bool
		steps []step
	}{
		{"unscoped, at once, then every interval", []queued{announce(a)}, false, []step{
			{0, []string{a.ID}}, {every / 2, nil}, {every, []string{a.ID}}, {every + every/2, nil}, {2 * every, []string{a.ID}}, {3*every + every/2, []string{a.ID}},
		}},
		{"announced again: at the next look", []queued{announce(a)}, true, []step{
			{0, []string{a.ID}}, {every / 2, nil}, {2*every + every/4, []string{a.ID}}, {2*every + every/2, nil}, {3*every + every/4, []string{a.ID}},
		}},
		{"scoped", []queued{announce(scoped)}, false, []step{{0, []string{"echo." + scoped.ID}}}},
		{"registered", []queued{registered(a)}, false, []step{{0, nil}, {5 * every, nil}}},
		{"deregister last", []queued{announce(a), dereg(a)}, false, []step{{0, nil}, {5 * every, nil}}},
		{"announce after a deregister", []queued{announce(a), dereg(a), announce(a)}, false, []step{{0, []string{a.ID}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newAdmission(metrics.NewSet())
			for _, it := range tt.offers {
				q.offer(it, t0)
			}
			for _, s := range tt.steps {
				if tt.again && s.at > 2*every {
					if o, _, _ := q.offer(tt.offers[0], t0.Add(2*every)); o != deferred {
						t.Fatalf("the same announce again: %s, want deferred (coalesced)", o)
					}
					tt.again = false
				}
				got := q.held(t0.Add(s.at), every, nil)
				if !slices.Equal(got, s.want) {
					t.Errorf("at %v: held %q, want %q", s.at, got, s.want)
				}
			}
			batch := q.take(maxBurst)
			if got := q.held(t0.Add(time.Hour), every, nil); len(got) != 0 {
				t.Errorf("taken to be applied: held %q", got)
			}
			q.done(batch, t0, func(string) bool { return false })
			if got := q.held(t0.Add(2*time.Hour), every, nil); len(got) != 0 {
				t.Errorf("after its items are done: held %q", got)
			}
			if len(q.beatNow) != 0 || len(q.beatsDue) != 0 {
				t.Errorf("after its items are done: %d keys to look at, %d due, want none kept", len(q.beatNow), len(q.beatsDue))
			}
		})
	}
}

// While the node's loop is busy, an instance whose announce waits in the
// queue hears heartbeats from the node (held) before it is
// registered: a v1 client, which announces again after three intervals
// without one, has no reason to. Once the loop is free it is registered;
// then a change of it that waits is not held (the rounds beat it).
func TestQueuedInstanceHeartbeated(t *testing.T) {
	const interval = 100 * time.Millisecond
	n, nc := runningNode(t, Config{Timing: Timing{Heartbeat: Heartbeat{Interval: interval, Timeout: interval / 2}}})
	a := events.Announce{ID: uuid.NewString(), Service: "echo", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100, Scoped: true}
	beats := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(events.Subjects{}.HeartbeatOf(a.Service, a.ID, true), beats)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	// announce publishes a, not waiting for its answer; beaten takes the
	// next k beats, each checked.
	announce := func(a events.Announce) {
		data, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.PublishRequest(events.Subjects{}.Announce(a.Service), nc.NewInbox(), data); err != nil {
			t.Fatal(err)
		}
	}
	beaten := func(k int, check func(m *nats.Msg, hb events.Heartbeat) error) {
		for i := range k {
			select {
			case m := <-beats:
				var hb events.Heartbeat
				err := json.Unmarshal(m.Data, &hb)
				if err == nil {
					err = check(m, hb)
				}
				if err != nil {
					t.Fatalf("beat %d: %s: %v", i, m.Data, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%d heartbeats in 10s, want %d", i, k)
			}
		}
	}
	release := make(chan struct{})
	holdLoop(t, n, release)
	announce(a)
	beaten(3, func(m *nats.Msg, hb events.Heartbeat) error {
		if hb.Node != n.ID() || !hb.Queued || m.Reply == "" {
			return fmt.Errorf("want a queued heartbeat from node %s, with a reply subject", n.ID())
		}
		return nil
	})
	if _, ok := n.Registry().Get(events.InstanceKey(a.Service, a.ID)); ok {
		t.Fatal("registered while the loop was held")
	}
	// A beat is counted once its publish returns, which can be after a
	// subscriber has it.
	bustest.Eventually(t, 10*time.Second, func() error {
		if got := n.regs.adm.heldBeats.Get(); got < 3 {
			return fmt.Errorf("hail_discovery_queued_heartbeats_total %d, want the 3 heard", got)
		}
		return nil
	})
	close(release)
	bustest.Eventually(t, 10*time.Second, func() error {
		if _, ok := n.Registry().Get(events.InstanceKey(a.Service, a.ID)); !ok {
			return fmt.Errorf("not registered once the loop is free")
		}
		return nil
	})

	// Registered, its owner's rounds beat it: a change of it that waits
	// in the queue is not held. The rounds' beats go on while the loop
	// is held (their judgements wait), and the first look after the
	// change is queued comes within a quarter interval: among the next
	// six beats none is marked queued.
	for len(beats) > 0 {
		<-beats
	}
	release = make(chan struct{})
	holdLoop(t, n, release)
	defer close(release)
	a.Weight = 50
	announce(a)
	beaten(6, func(_ *nats.Msg, hb events.Heartbeat) error {
		if hb.Queued {
			return errors.New("a registered instance held, want its rounds' beats alone")
		}
		return nil
	})
}

// BenchmarkAdmissionHeld measures held's looks (four an interval, every
// two intervals a beat) while 40,000 instances' announces wait, as at the
// start of a 50,000 v1 region: per look, and per instance held.
//
//	go test -run '^$' -bench AdmissionHeld ./discovery/
func BenchmarkAdmissionHeld(b *testing.B) {
	const waiting, interval = 40_000, time.Second
	q := newAdmission(metrics.NewSet())
	q.answerMax, q.holdMax, q.holdBytes = waiting, 2*waiting, 1<<30
	now := time.Unix(1_700_000_000, 0)
	for range waiting {
		a := events.Announce{ID: uuid.NewString(), Service: "echo", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100}
		if o, _, _ := q.offer(queued{m: &nats.Msg{Subject: "hail.announce.echo"}, key: events.InstanceKey(a.Service, a.ID), a: a, hold: true, size: 100}, now); o == refused {
			b.Fatal("refused")
		}
	}
	targets := q.held(now, 2*interval, nil)
	if len(targets) != waiting {
		b.Fatalf("first look held %d, want %d", len(targets), waiting)
	}
	beats := 0
	for b.Loop() {
		now = now.Add(interval / 4)
		targets = q.held(now, 2*interval, targets[:0])
		beats += len(targets)
	}
	if beats == 0 {
		b.Fatal("no beats")
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(beats), "ns/beat")
}

// An instance whose registration is applied while a change of it still
// waits is held no more: its owner's rounds beat it from then on. One
// whose registration failed (a KV error) is not registered, and still is.
func TestHeldNoMoreOnceRegistered(t *testing.T) {
	for _, registered := range []bool{true, false} {
		q := newAdmission(metrics.NewSet())
		a := events.Announce{ID: uuid.NewString(), Service: "echo", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100}
		c := a
		c.Weight = 50
		key := events.InstanceKey(a.Service, a.ID)
		t0 := time.Unix(1_700_000_000, 0)
		for _, an := range []events.Announce{a, c} {
			q.offer(queued{m: &nats.Msg{Subject: "hail.announce.echo"}, key: key, a: an, hold: true}, t0)
		}
		if got := q.held(t0, time.Second, nil); len(got) != 1 {
			t.Fatalf("both queued: held %q, want its target once", got)
		}
		q.done(q.take(1), t0, func(string) bool { return registered }) // its registration, applied
		got := q.held(t0.Add(time.Hour), time.Second, nil)
		if registered && len(got) != 0 {
			t.Errorf("registered, its change waiting: held %q, want none", got)
		}
		if !registered && len(got) != 1 {
			t.Errorf("its registration failed, its change waiting: held %q, want its target", got)
		}
	}
}

// The queue's byte bound holds for announces answered in their turn as
// for deferred ones, and counts what an announce takes decoded: a client
// sending announces of thousands of tiny metadata entries (5.4 times
// their size decoded) is refused once the bound is reached, however few
// are queued.
func TestAdmissionBoundsDecodedBytes(t *testing.T) {
	n, nc := runningNode(t, Config{})
	release := make(chan struct{})
	holdLoop(t, n, release)
	defer close(release)
	body := func(id string) []byte {
		var b strings.Builder
		b.WriteString(`{"id":"` + id + `","service":"hog","endpoints":[{"name":"say"}],"metadata":{`)
		for i := 0; b.Len() < 60<<10; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"%x":""`, i)
		}
		b.WriteString(`}}`)
		return []byte(b.String())
	}
	const sent = 100 // each charged over half a MiB: more than holdBytes in all
	inbox, sub := replyInbox(t, nc)
	for range sent {
		if err := nc.PublishRequest(events.Subjects{}.Announce("hog"), inbox, body(uuid.NewString())); err != nil {
			t.Fatal(err)
		}
	}
	// The loop is held: an admitted announce waits for its answer, a
	// refused one has its 503 at once.
	refusals := n.regs.adm.counts[refused]
	var queued int
	bustest.Eventually(t, 30*time.Second, func() error {
		n.regs.adm.mu.Lock()
		queued = len(n.regs.adm.items) - n.regs.adm.head
		n.regs.adm.mu.Unlock()
		if got := queued + int(refusals.Get()); got != sent {
			return fmt.Errorf("%d queued and %d refused of %d sent", queued, refusals.Get(), sent)
		}
		return nil
	})
	n.regs.adm.mu.Lock()
	bytes := n.regs.adm.bytes
	n.regs.adm.mu.Unlock()
	if bytes > holdBytes {
		t.Errorf("the queue counts %d bytes, over its bound %d", bytes, holdBytes)
	}
	if refusals.Get() == 0 {
		t.Fatalf("all %d queued (%d bytes counted), want the bound to refuse some", queued, bytes)
	}
	for i := range int(refusals.Get()) {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("refusal %d: %v", i, err)
		}
		if code, _, isErr := events.ReplyError(m); !isErr || code != 503 {
			t.Errorf("refusal %d answered %s, want a 503", i, m.Data)
		}
	}
}

// An unscoped instance's heartbeat subject, hail.hb.<id>, names no
// service. In a secured region a service's credential may not publish it,
// so a node does not heartbeat an unscoped announce while it waits: else
// a service could have it beat another service's instance by announcing
// that id. A scoped one, whose subject names the announcing service, is
// held as anywhere; in an open region, where anyone may publish either,
// both are.
func TestHeldUnscopedOnlyInOpenRegions(t *testing.T) {
	s := events.Subjects{}
	disc, svc := roles.Discovery(s), roles.Service(s, "attacker")
	srv := bustest.RunSecured(t, disc, svc)
	connect := func(r roles.Role) *nats.Conn {
		return bustest.Connect(t, srv.ClientURL(), nats.UserInfo(r.Name, "pw-"+r.Name), nats.CustomInboxPrefix(r.InboxPrefix()))
	}
	dnc := connect(disc)
	n, err := New(dnc, bustest.Buckets(t, dnc), Config{})
	if err != nil {
		t.Fatal(err)
	}
	open, _, _ := idleNode(t)
	for _, tt := range []struct {
		name   string
		g      *registrations
		scoped bool
		want   bool
	}{
		{"secured, unscoped", n.regs, false, false},
		{"secured, scoped", n.regs, true, true},
		{"open, unscoped", open.regs, false, true},
		{"open, scoped", open.regs, true, true},
	} {
		a := events.Announce{ID: uuid.NewString(), Service: "attacker", Endpoints: []events.Endpoint{{Name: "say"}}, Scoped: tt.scoped}
		if got := tt.g.holds(a, standing{}); got != tt.want {
			t.Errorf("%s: held %v, want %v", tt.name, got, tt.want)
		}
		if got := tt.g.holds(a, standing{known: true}); got {
			t.Errorf("%s, registered: held, want its owner's rounds alone", tt.name)
		}
		if got := tt.g.holds(a, standing{taken: true}); got {
			t.Errorf("%s, id another service's: held", tt.name)
		}
		// And through the announce's way in, as its subscription hands
		// it over: the queued key holds or not.
		data, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		tt.g.offerAnnounce(t.Context(), &nats.Msg{Subject: s.Announce(a.Service), Data: data})
		tt.g.adm.mu.Lock()
		k := tt.g.adm.byKey[events.InstanceKey(a.Service, a.ID)]
		tt.g.adm.mu.Unlock()
		if k == nil || k.hold != tt.want {
			t.Errorf("%s, offered: queued %+v, want held %v", tt.name, k, tt.want)
		}
	}
}
