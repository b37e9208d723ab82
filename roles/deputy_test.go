package roles_test

// The confused deputy of the [trust] issue: with only its own service's
// credential, an attacker sends announces whose reply subject lies in
// someone else's inbox, so that discovery's error reply is taken there for
// an answer. It sees both targets in its own traffic: the router's inbox
// (the reply subject of each request routed to it) and discovery's
// heartbeat inbox (that of each heartbeat). Discovery answers neither,
// and their reply tokens are random besides.

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/roles"
)

// deputy starts an instance of evil (svc-evil) that, on every message it
// hears on subject (its own, a scoped one), sends announces of evil with
// {} as body and the replies spray(m) names: discovery refuses them (the
// body is no announce), and its refusal goes wherever the reply points.
func (tg *target) deputy(t *testing.T, subject func(id string) string, spray func(m *nats.Msg) []string) (*fakeinst.Instance, *atomic.Int64) {
	t.Helper()
	f := fakeinst.Start(t, "", fakeinst.Options{Service: "evil", Scoped: true, Conn: tg.evil.nc})
	var sent atomic.Int64
	if _, err := tg.evil.nc.Subscribe(subject(f.ID), func(m *nats.Msg) {
		for _, reply := range spray(m) {
			if err := tg.evil.nc.PublishRequest(subjects.Announce("evil"), reply, []byte("{}")); err == nil {
				sent.Add(1)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := tg.evil.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return f, &sent
}

// foreignReplies is how many requests discovery refused to answer for
// their reply subject.
func (tg *target) foreignReplies() int {
	return int(tg.metrics.GetOrCreateCounter(`hail_discovery_rejected_total{reason="foreign_reply"}`).Get())
}

// Sprayed into the router's inbox (the tokens around the attacker's own),
// discovery's refusals answer none of the requests routed to echo meanwhile.
func TestAttackDeputyIntoRouterInbox(t *testing.T) {
	tg := newTarget(t)
	// A slow echo instance keeps requests waiting for their answers.
	fakeinst.Start(t, "", fakeinst.Options{Service: "echo", Scoped: true, Delay: 30 * time.Millisecond,
		Conn: connectAs(t, tg.s, roles.Service(subjects, "echo")).nc})
	_, sent := tg.deputy(t, func(id string) string { return subjects.InstOf("evil", id, "say", true) }, func(m *nats.Msg) []string {
		dot := strings.LastIndexByte(m.Reply, '.')
		token, err := strconv.ParseUint(m.Reply[dot+1:], 36, 64)
		if err != nil {
			return nil
		}
		var out []string
		for k := uint64(1); k <= 40; k++ {
			out = append(out, m.Reply[:dot+1]+strconv.FormatUint(token+k, 36))
			if token >= k {
				out = append(out, m.Reply[:dot+1]+strconv.FormatUint(token-k, 36))
			}
		}
		return out
	})
	bustest.Eventually(t, 10*time.Second, func() error {
		_, err := tg.thief.nc.Request(subjects.Route("evil", "say"), []byte("hi"), time.Second)
		return err
	})

	var forged, answered atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 25 {
				m, err := tg.caller.nc.Request(subjects.Route("echo", "say"), []byte("hi"), 5*time.Second)
				if err != nil {
					t.Errorf("routed request: %v", err)
					return
				}
				answered.Add(1)
				if code, text, isErr := events.ReplyError(m); isErr {
					forged.Add(1)
					t.Logf("answered %d %s", code, text)
				}
			}
		})
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	// The attacker has requests routed to itself throughout, as callers
	// of its own service would.
	for calling := true; calling; {
		select {
		case <-done:
			calling = false
		default:
			// Its answer does not matter, only the reply subject it saw.
			_, _ = tg.thief.nc.Request(subjects.Route("evil", "say"), []byte("hi"), time.Second)
		}
	}
	if n := forged.Load(); n > 0 {
		t.Errorf("%d of %d routed requests answered by discovery's refusal of a forged announce", n, answered.Load())
	}
	if sent.Load() == 0 {
		t.Error("the attacker sent no announce: the attack was not tried")
	}
}

// Sprayed into discovery's heartbeat inbox (this round's and the next
// ones', every index but the attacker's own), discovery's refusals keep a
// hung echo instance (SIGSTOP: it hears, it does not answer) from nothing:
// it goes critical as soon as three heartbeats are missed.
func TestAttackDeputyIntoHeartbeatInbox(t *testing.T) {
	tg := newTarget(t)
	victim := fakeinst.Start(t, "", fakeinst.Options{Service: "echo", Scoped: true,
		Conn: connectAs(t, tg.s, roles.Service(subjects, "echo")).nc})
	_, sent := tg.deputy(t, func(id string) string { return subjects.HeartbeatOf("evil", id, true) }, func(m *nats.Msg) []string {
		var hb events.Heartbeat
		if err := json.Unmarshal(m.Data, &hb); err != nil {
			return nil
		}
		// <inbox><seq>.<index>[.<anything after>]: the tokens from the
		// sequence number on are replaced.
		tokens := strings.Split(m.Reply, ".")
		at := -1
		for i, tok := range tokens {
			if tok == strconv.FormatUint(hb.Seq, 10) {
				at = i
			}
		}
		if at < 0 || at+1 >= len(tokens) {
			return nil
		}
		inbox := strings.Join(tokens[:at], ".") + "."
		var out []string
		for seq := hb.Seq; seq <= hb.Seq+2; seq++ {
			for idx := range 8 {
				if seq == hb.Seq && strconv.Itoa(idx) == tokens[at+1] {
					continue // its own
				}
				forged := inbox + strconv.FormatUint(seq, 10) + "." + strconv.Itoa(idx)
				out = append(out, forged, forged+"."+strings.Join(tokens[at+2:], "."))
			}
		}
		return out
	})
	bustest.Eventually(t, 5*time.Second, func() error {
		if victim.Beats() < 3 {
			return fmt.Errorf("%d heartbeats to the victim", victim.Beats())
		}
		if sent.Load() == 0 {
			return fmt.Errorf("the attacker sent nothing yet")
		}
		return nil
	})
	victim.Silence()
	silenced := time.Now()
	// 3 missed heartbeats at 100 ms take 0.3-0.4 s; 5 s leaves room for a
	// loaded machine, and is far from the attack's hold (28 s in the
	// issue, for as long as the spray went on here).
	bustest.Eventually(t, 5*time.Second, func() error {
		for _, rec := range tg.instances(t) {
			if rec.ID == victim.ID && rec.Status == events.Critical {
				return nil
			}
		}
		return fmt.Errorf("the hung instance is not critical %v after it fell silent", time.Since(silenced).Round(time.Millisecond))
	})
}

// Of every role's inbox, an announce of evil is answered only on
// svc-evil's, its sender's own; each other is refused and counted.
func TestDeputyAnswersOnlyTheSendersInbox(t *testing.T) {
	tg := newTarget(t)
	f := fakeinst.Start(t, "", fakeinst.Options{Service: "evil", Scoped: true, Conn: tg.evil.nc, Manual: true})
	for _, r := range roles.All(subjects, []string{"echo", "evil"}, nil) {
		reply := r.InboxPrefix() + ".deputy"
		before := tg.foreignReplies()
		if r.Name == roles.Service(subjects, "evil").Name {
			sub, err := tg.evil.nc.SubscribeSync(reply)
			if err != nil {
				t.Fatal(err)
			}
			if err := tg.evil.nc.PublishRequest(subjects.Announce("evil"), reply, f.AnnounceData()); err != nil {
				t.Fatal(err)
			}
			m, err := sub.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatalf("no answer on the sender's own inbox %s: %v", reply, err)
			}
			if code, text, isErr := events.ReplyError(m); isErr {
				t.Fatalf("announce on %s answered %d %s", reply, code, text)
			}
			_ = sub.Unsubscribe()
			continue
		}
		if err := tg.evil.nc.PublishRequest(subjects.Announce("evil"), reply, f.AnnounceData()); err != nil {
			t.Fatal(err)
		}
		bustest.Eventually(t, 5*time.Second, func() error {
			if tg.foreignReplies() != before+1 {
				return fmt.Errorf("an announce answered on %s's inbox %s", r.Name, reply)
			}
			return nil
		})
	}
}

// Announcing and deregistering, as svc-evil, with a 60 KB reason each
// time adds little to HAIL_EVENTS: the reason is cut (872 such pairs
// added 52.8 MB, and about 28 s of them would have pushed out the week's
// history).
func TestAttackFillEventsThroughDiscovery(t *testing.T) {
	tg := newTarget(t)
	js, err := jetstream.New(tg.disc.nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(t.Context(), bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	before, err := stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	const pairs = 40
	reason := strings.Repeat("x", 60<<10)
	for range pairs {
		f := fakeinst.Start(t, "", fakeinst.Options{Service: "evil", Scoped: true, Conn: tg.evil.nc})
		d, _ := json.Marshal(events.Deregister{ID: f.ID, Service: "evil", Reason: reason})
		if err := fakeinst.Ack(tg.evil.nc, subjects.Deregister("evil"), d); err != nil {
			t.Fatal(err)
		}
	}
	bustest.Eventually(t, 5*time.Second, func() error {
		info, err := stream.Info(t.Context())
		if err != nil {
			return err
		}
		if n := info.State.Msgs - before.State.Msgs; n < 2*pairs {
			return fmt.Errorf("%d events of %d", n, 2*pairs)
		}
		if added := info.State.Bytes - before.State.Bytes; added > 2*pairs*1024 {
			t.Errorf("%d pairs added %d bytes to %s", pairs, added, bus.EventsStream)
		}
		return nil
	})
}
