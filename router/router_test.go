package router_test

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/router"
)

func TestWeightedShares(t *testing.T) {
	e := newEnv(t)
	a := e.instance(fakeinst.Options{Weight: 100})
	b := e.instance(fakeinst.Options{Weight: 200})
	c := e.instance(fakeinst.Options{Weight: 300})
	drained := e.instance(fakeinst.Options{Drain: true})
	e.routable("echo", 3)
	before := map[*fakeinst.Instance]int64{a: a.Served(), b: b.Served(), c: c.Served()}
	const n = 6000
	for i := range n {
		m, err := e.NC.Request(subjects.Route("echo", "say"), nil, 2*time.Second)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if m.Header.Get(events.HeaderInstance) != string(m.Data) {
			t.Fatalf("Hail-Instance %q, answered by %q", m.Header.Get(events.HeaderInstance), m.Data)
		}
	}
	for inst, want := range map[*fakeinst.Instance]float64{a: 1.0 / 6, b: 2.0 / 6, c: 3.0 / 6} {
		got := float64(inst.Served()-before[inst]) / n
		if math.Abs(got-want) > 0.03 {
			t.Errorf("instance %s: share %.3f, want %.3f ± 0.03", inst.ID, got, want)
		}
	}
	if drained.Served() != 0 {
		t.Errorf("weight 0 instance served %d requests", drained.Served())
	}
}

func TestErrorsAnsweredAtOnce(t *testing.T) {
	e := newEnv(t)
	e.instance(fakeinst.Options{Drain: true})
	// The drained instance makes echo known; wait until the router knows.
	bustest.Eventually(t, 5*time.Second, func() error {
		if e.router.Table().View("echo") == nil {
			return errors.New("echo not in the table")
		}
		return nil
	})
	tests := []struct {
		subject string
		code    int
		want    string // in the error's text
		within  time.Duration
	}{
		// The only instance is passing, drained: the 503 says so rather
		// than calling it unhealthy.
		{subjects.Route("echo", "say"), events.CodeUnavailable, "drained", 50 * time.Millisecond},
		{subjects.Route("nosuch", "say"), events.CodeNotFound, `"nosuch"`, 50 * time.Millisecond},
		{subjects.Route("echo", "nosuch"), events.CodeNotFound, `"nosuch"`, 50 * time.Millisecond},
		{"hail.route.echo", events.CodeBadRequest, "", 50 * time.Millisecond},
		{"hail.route.Bad.say", events.CodeBadRequest, "", 50 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.subject, func(t *testing.T) {
			start := time.Now()
			m, err := e.NC.Request(tt.subject, []byte("hi"), 5*time.Second)
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			code, text, isErr := events.ReplyError(m)
			if !isErr || code != tt.code {
				t.Fatalf("reply %q %v, want error %d", m.Data, m.Header, tt.code)
			}
			if text == "" || !strings.Contains(text, tt.want) {
				t.Errorf("error text %q, want it to say %q", text, tt.want)
			}
			// A functional bound (the caller is not left to its own 5 s
			// timeout), far above the router's real cost.
			if took > tt.within*10 {
				t.Errorf("answered after %s", took)
			}
			t.Logf("%d answered in %s", code, took)
		})
	}
}

func TestRouteConfigTakesEffect(t *testing.T) {
	e := newEnv(t)
	for range 4 {
		e.instance(fakeinst.Options{})
	}
	e.routable("echo", 4)
	key := nats.Header{events.HeaderKey: []string{"user-42"}}
	spread := func() int {
		seen := map[string]bool{}
		for range 40 {
			m, err := e.NC.RequestMsg(&nats.Msg{Subject: subjects.Route("echo", "say"), Header: key}, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			seen[string(m.Data)] = true
		}
		return len(seen)
	}
	if n := spread(); n == 1 {
		t.Fatal("weighted routing sent a key to one instance only")
	}
	put := time.Now()
	e.putRoute("echo", `{"strategy":"hash"}`)
	bustest.Eventually(t, time.Second, func() error {
		if n := spread(); n != 1 {
			return fmt.Errorf("key on %d instances", n)
		}
		return nil
	})
	t.Logf("hash in force %s after the put", time.Since(put).Round(time.Millisecond))

	// An invalid route is refused and counted; hash stays in force.
	rejected := e.counter(`hail_router_rejected_total{reason="bad_route"}`)
	e.putRoute("echo", `{"strategy":"fastest"}`)
	bustest.Eventually(t, 2*time.Second, func() error {
		if e.counter(`hail_router_rejected_total{reason="bad_route"}`) != rejected+1 {
			return errors.New("bad route not counted")
		}
		return nil
	})
	if got := e.router.Table().View("echo").Route.Strategy; got != "hash" {
		t.Fatalf("strategy %q after a bad put, want hash", got)
	}
	if n := spread(); n != 1 {
		t.Fatalf("after a bad put a key lands on %d instances", n)
	}
	// A custom hash header.
	e.putRoute("echo", `{"strategy":"hash","hash_header":"X-User"}`)
	bustest.Eventually(t, time.Second, func() error {
		if h := e.router.Table().View("echo").Route.HashHeader; h != "X-User" {
			return fmt.Errorf("hash header %q", h)
		}
		return nil
	})
	key = nats.Header{"X-User": []string{"u-7"}}
	if n := spread(); n != 1 {
		t.Fatalf("X-User key on %d instances", n)
	}
	// Deleting the route brings back the defaults.
	if err := e.KV.Config.Delete(t.Context(), events.RouteConfigKey("echo")); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, time.Second, func() error {
		if s := e.router.Table().View("echo").Route.Strategy; s != "weighted" {
			return fmt.Errorf("strategy %q", s)
		}
		return nil
	})
}

func TestKilledInstanceUnderLoad(t *testing.T) {
	for _, retryOnTimeout := range []bool{false, true} {
		t.Run(fmt.Sprint("retry_on_timeout=", retryOnTimeout), func(t *testing.T) {
			e := newEnv(t)
			e.putRoute("echo", fmt.Sprintf(`{"timeout_ms":2000,"retry_on_timeout":%v}`, retryOnTimeout))
			victim := e.instance(fakeinst.Options{Delay: 5 * time.Millisecond})
			for range 2 {
				e.instance(fakeinst.Options{Delay: 5 * time.Millisecond})
			}
			e.routable("echo", 3)
			l := e.load(16, subjects.Route("echo", "say"), nil, 5*time.Second)
			bustest.Eventually(t, 5*time.Second, func() error {
				if victim.Served() < 50 {
					return errors.New("victim not loaded yet")
				}
				return nil
			})
			held := victim.Inflight()
			victim.Kill()
			// Keep the load on until well past the kill.
			atKill := l.count()
			bustest.Eventually(t, 10*time.Second, func() error {
				if l.count() < atKill+2000 {
					return errors.New("load still running")
				}
				return nil
			})
			l.finish()
			l.mu.Lock()
			defer l.mu.Unlock()
			failed := 0
			for k, v := range l.errors {
				if retryOnTimeout || len(k) < 3 || k[:3] != "504" {
					t.Errorf("%d callers saw %q", v, k)
				}
				failed += v
			}
			// Only what the victim held when it died may fail; the
			// fake answers after 5ms, so that is at most the 16 callers.
			if !retryOnTimeout && failed > 16 {
				t.Errorf("%d requests failed (victim held about %d)", failed, held)
			}
			t.Logf("%d requests, %d failed, victim held %d", l.total, failed, held)
			// The victim drew one no-responders (per request already
			// picked for it when it died), then was ejected.
			retries := e.counter(`hail_router_retries_total{service="echo"}`)
			if retries > 16+16 {
				t.Errorf("%v retries after one kill: the dead instance was picked again", retries)
			}
			if e.counter(`hail_router_ejections_total{service="echo"}`) != 1 {
				t.Errorf("ejections %v, want 1", e.counter(`hail_router_ejections_total{service="echo"}`))
			}
		})
	}
}

func TestClientSideRouting(t *testing.T) {
	e := newEnv(t)
	a := e.instance(fakeinst.Options{})
	e.routable("echo", 1)
	c, err := router.NewClient(t.Context(), bustest.Connect(t, e.URL), router.TableConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m, err := c.Request(t.Context(), "echo", "say", []byte("hi"))
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != a.ID || m.Header.Get(events.HeaderInstance) != a.ID {
		t.Fatalf("reply %q from %q, want %s", m.Data, m.Header.Get(events.HeaderInstance), a.ID)
	}
	_, err = c.Request(t.Context(), "nosuch", "say", nil)
	var rerr *router.Error
	if !errors.As(err, &rerr) || rerr.Code != events.CodeNotFound {
		t.Fatalf("unknown service: %v, want a 404 *router.Error", err)
	}
}

// The router answers only reply subjects under _INBOX.
func TestRouterRepliesOnlyToInboxes(t *testing.T) {
	e := newEnv(t)
	e.instance(fakeinst.Options{})
	e.routable("echo", 1)
	// Each is a subject no caller could own: outside _INBOX., inside the
	// router's own inbox (where its attempts' answers come: a forged
	// request would answer another caller's routed request) or discovery's
	// (where heartbeats are answered).
	forbidden := []string{"hail.health.echo.forged", "_INBOX.router.x.y", "_INBOX.discovery.hb.1.2"}
	got := make(chan *nats.Msg, 4)
	for _, subject := range forbidden {
		sub, err := e.NC.ChanSubscribe(subject, got)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
	}
	for i, subject := range forbidden {
		if err := e.NC.PublishRequest(subjects.Route("echo", "say"), subject, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf(`hail_router_requests_total{service="_unknown",endpoint="_unknown",outcome="bad_request"} %d`, i+1)
		bustest.Eventually(t, 5*time.Second, func() error {
			var b strings.Builder
			e.metrics.WritePrometheus(&b)
			if !strings.Contains(b.String(), want) {
				return fmt.Errorf("%s not counted yet", subject)
			}
			return nil
		})
	}
	// A caller's own inbox is answered, so the refusals above were the
	// rule's and not a dead router's.
	if _, err := e.NC.Request(subjects.Route("echo", "say"), []byte("hi"), 5*time.Second); err != nil {
		t.Fatalf("routed request on the caller's inbox: %v", err)
	}
	select {
	case m := <-got:
		t.Errorf("the router answered on %s: %q", m.Subject, m.Data)
	default:
	}
}

// A health event about one instance published on another's subject is
// forged: it takes nothing out.
func TestForgedHealthEventIgnored(t *testing.T) {
	e := newEnv(t)
	a := e.instance(fakeinst.Options{})
	b := e.instance(fakeinst.Options{})
	e.routable("echo", 2)
	forged := fmt.Sprintf(`{"id":%q,"service":"echo","status":"critical","previous":"passing","node":%q,"ts":%q}`,
		a.ID, b.ID, time.Now().UTC().Format(time.RFC3339Nano))
	for range 3 {
		if err := e.NC.Publish(subjects.Health("echo", b.ID), []byte(forged)); err != nil {
			t.Fatal(err)
		}
	}
	bustest.Eventually(t, 5*time.Second, func() error {
		var s strings.Builder
		e.metrics.WritePrometheus(&s)
		if !strings.Contains(s.String(), `hail_router_rejected_total{reason="bad_event"} 3`) {
			return fmt.Errorf("forged events not counted yet")
		}
		return nil
	})
	e.routable("echo", 2) // a still answers
}
