package member_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/agent"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/instance"
	"github.com/hailsd/hail/member"
)

var subjects events.Subjects

// fakeDiscovery hears announces on a real server and answers them as a
// case scripts: taken, refused, busy, or not at all.
type fakeDiscovery struct {
	nc        *nats.Conn
	announces chan heard
}

type heard struct {
	at  time.Time
	msg *nats.Msg
}

func newFakeDiscovery(t *testing.T, url string) *fakeDiscovery {
	t.Helper()
	d := &fakeDiscovery{nc: bustest.Connect(t, url), announces: make(chan heard, 100)}
	if _, err := d.nc.Subscribe(subjects.AnnounceAll(), func(m *nats.Msg) { d.announces <- heard{time.Now(), m} }); err != nil {
		t.Fatal(err)
	}
	// Leaving is acknowledged, so that a shutdown waits for nothing.
	if _, err := d.nc.Subscribe(subjects.DeregisterAll(), func(m *nats.Msg) { _ = m.Respond([]byte(`{"ok":true}`)) }); err != nil {
		t.Fatal(err)
	}
	if err := d.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return d
}

// next is the next announce, within a generous deadline.
func (d *fakeDiscovery) next(t *testing.T) heard {
	t.Helper()
	select {
	case h := <-d.announces:
		return h
	case <-time.After(15 * time.Second):
		t.Fatal("no announce within 15s")
		return heard{}
	}
}

// none wants no announce for the window watched.
func (d *fakeDiscovery) none(t *testing.T, window time.Duration) {
	t.Helper()
	select {
	case h := <-d.announces:
		t.Fatalf("an announce %s after the window opened: %s", time.Since(h.at), h.msg.Data)
	case <-time.After(window): // the window watched, not a wait for something
	}
}

func taken(t *testing.T, h heard) {
	t.Helper()
	if err := h.msg.Respond([]byte(`{"ok":true}`)); err != nil {
		t.Fatal(err)
	}
}

func answer(t *testing.T, h heard, code int, body string) {
	t.Helper()
	m := events.ErrorMsg(code, "scripted")
	if body != "" {
		m.Data = []byte(body)
	}
	if err := h.msg.RespondMsg(m); err != nil {
		t.Fatal(err)
	}
}

// joined is one instance under test: its id and its refusal.
type joined struct {
	id  string
	err func() error
}

// kinds are the two ways to run a member: the SDK and an agent's service.
var kinds = []struct {
	name  string
	start func(t *testing.T, url string, interval time.Duration) joined
}{
	{"sdk", func(t *testing.T, url string, interval time.Duration) joined {
		inst, err := instance.New(bustest.Connect(t, url), instance.Config{Service: "echo", HeartbeatInterval: interval})
		if err != nil {
			t.Fatal(err)
		}
		if err := inst.Handle("say", func(_ context.Context, m *nats.Msg) ([]byte, error) { return m.Data, nil }); err != nil {
			t.Fatal(err)
		}
		if err := inst.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = inst.Shutdown(context.Background()) })
		return joined{inst.ID(), inst.Err}
	}},
	{"agent", func(t *testing.T, url string, interval time.Duration) joined {
		a := agent.New(bustest.Connect(t, url), agent.Config{HeartbeatInterval: interval})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx, []agent.ServiceConfig{{Name: "echo", Address: "127.0.0.1"}}) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent: %v", err)
			}
		})
		var id string
		bustest.Eventually(t, 10*time.Second, func() error {
			var ok bool
			if id, ok = a.ID("echo"); !ok {
				return errors.New("echo not started")
			}
			return nil
		})
		return joined{id, func() error { return a.Err("echo") }}
	}},
}

// The SDK and the agent make the member's decisions alike, each case
// against a real server with a scripted discovery: a 4xx is final, a 503
// comes back after its retry_after_ms, a 503 without one and silence back
// off (silence after the one announce timeout), a hail.discover is
// answered within its spread, and heartbeats keep a member quiet until
// they stop.
func TestSDKAndAgentDecideAlike(t *testing.T) {
	cases := []struct {
		name     string
		interval time.Duration
		run      func(t *testing.T, d *fakeDiscovery, j joined, interval time.Duration)
	}{
		{"a 4xx is final", 100 * time.Millisecond, func(t *testing.T, d *fakeDiscovery, j joined, iv time.Duration) {
			answer(t, d.next(t), events.CodeBadRequest, "")
			bustest.Eventually(t, 5*time.Second, func() error {
				if !errors.Is(j.err(), member.ErrRefused) {
					return fmt.Errorf("err %v, want the refusal", j.err())
				}
				return nil
			})
			// Neither a discover nor ten unheard intervals bring it back.
			if err := d.nc.Publish(subjects.Discover(), []byte(`{"spread_ms":50}`)); err != nil {
				t.Fatal(err)
			}
			d.none(t, 10*iv)
		}},
		{"a 503 with retry_after_ms comes back after it", 100 * time.Millisecond, func(t *testing.T, d *fakeDiscovery, j joined, iv time.Duration) {
			const after = 1500 * time.Millisecond // the backoff alone: at most 6 intervals
			answer(t, d.next(t), events.CodeUnavailable, fmt.Sprintf(`{"ok":false,"error":"busy","code":503,"retry_after_ms":%d}`, after.Milliseconds()))
			answered := time.Now()
			h := d.next(t)
			if gap := h.at.Sub(answered); gap < after {
				t.Fatalf("announced again %v after a 503 asking for %v", gap, after)
			}
			taken(t, h)
			if j.err() != nil {
				t.Errorf("err %v after a 503", j.err())
			}
		}},
		{"a 503 without retry_after_ms backs off", 100 * time.Millisecond, func(t *testing.T, d *fakeDiscovery, j joined, iv time.Duration) {
			answer(t, d.next(t), events.CodeUnavailable, "")
			answered := time.Now()
			h := d.next(t)
			if gap := h.at.Sub(answered); gap < member.UnheardIntervals*iv {
				t.Fatalf("announced again %v after a 503, before %d intervals", gap, member.UnheardIntervals)
			}
			taken(t, h)
		}},
		{"silence: the one timeout, then backoff", 100 * time.Millisecond, func(t *testing.T, d *fakeDiscovery, j joined, iv time.Duration) {
			first := d.next(t) // not answered
			h := d.next(t)
			// At least the timeout (the backoff after it is the slack for
			// delivery), and well within the timeout, the most backoff
			// and 2 s more (it was 5 s in the agent).
			gap, least := h.at.Sub(first.at), member.AnnounceTimeout(iv)
			if most := least + member.Backoff(iv, 1, func(d time.Duration) time.Duration { return d }) + 2*time.Second; gap < least || gap > most {
				t.Fatalf("announced again %v after an unanswered one, want %v..%v", gap, least, most)
			}
			taken(t, h)
		}},
		{"a discover is answered within its spread", 2 * time.Second, func(t *testing.T, d *fakeDiscovery, j joined, iv time.Duration) {
			taken(t, d.next(t))
			asked := time.Now()
			if err := d.nc.Publish(subjects.Discover(), []byte(`{"spread_ms":200}`)); err != nil {
				t.Fatal(err)
			}
			h := d.next(t)
			// Well before the unheard re-announce (3 intervals, 6 s).
			if gap := h.at.Sub(asked); gap > member.UnheardIntervals*iv-time.Second {
				t.Fatalf("announced %v after a discover with a spread of 200ms", gap)
			}
			taken(t, h)
		}},
		{"heartbeats keep it quiet; without them it announces again", 500 * time.Millisecond, func(t *testing.T, d *fakeDiscovery, j joined, iv time.Duration) {
			taken(t, d.next(t))
			var last time.Time
			late := 0
			for range 8 { // 4 s of heartbeats, more than the 1.5 s unheard
				last = time.Now() // the member hears it after this
				if _, err := d.nc.Request(subjects.Heartbeat(j.id), []byte(`{"node":"x","seq":1}`), 5*time.Second); err != nil {
					t.Fatalf("heartbeat: %v", err)
				}
				select {
				case h := <-d.announces:
					// The member heard the last heartbeat after it was
					// sent: an announce sooner than 3 intervals after
					// that breaks the rule. One later came because this
					// test's heartbeats were late (a loaded machine
					// delays the request and the wait): taken, and the
					// heartbeats go on, a few times at most.
					if gap := h.at.Sub(last); gap < member.UnheardIntervals*iv {
						t.Fatalf("announced %v after a heartbeat: %s", gap, h.msg.Data)
					}
					if late++; late > 3 {
						t.Fatalf("this test's heartbeats came over %d intervals apart %d times: the machine is too slow for it", member.UnheardIntervals, late)
					}
					taken(t, h)
				case <-time.After(iv): // the heartbeat interval
				}
			}
			h := d.next(t)
			if gap := h.at.Sub(last); gap < member.UnheardIntervals*iv {
				t.Fatalf("announced again %v after the last heartbeat, before %d intervals", gap, member.UnheardIntervals)
			}
			taken(t, h)
		}},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					url := bustest.RunServer(t).ClientURL()
					d := newFakeDiscovery(t, url)
					c.run(t, d, k.start(t, url, c.interval), c.interval)
				})
			}
		})
	}
}
