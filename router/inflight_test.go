package router_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
)

// answer is a routed request's outcome as its caller saw it.
type answer struct {
	code     int    // 200 when the instance answered
	instance string // Hail-Instance of an answer
	text     string // an error's text
}

// An instance takes a request and never answers; then its connection
// closes, and discovery (its owner) sends the critical event with reason
// disconnected. The attempt ends at that event, not at its timeout (an
// attempt's timeout here is 20 s, the test gives it 10): on a route with
// retry_on_timeout it is tried again on the healthy instance, else it is
// answered 504 at once (the request may have been acted on; PROTOCOL
// v1.4). From the bus (hail.route.>) and from the HTTP ingress alike. The
// same event from a node that does not own the instance ends nothing.
func TestClosedConnectionEndsAttempts(t *testing.T) {
	tests := []struct {
		name  string
		route string
		http  bool
		retry bool // want the healthy instance's answer, else a 504
		// recordFirst: the instance is out of the table (its record
		// critical) before the event comes, as when the owner's KV write
		// reaches the router before its event.
		recordFirst bool
	}{
		{"bus retried", `{"timeout_ms":60000,"retry_on_timeout":true}`, false, true, false},
		{"ingress retried", `{"timeout_ms":60000,"retry_on_timeout":true}`, true, true, false},
		{"bus not idempotent", `{"timeout_ms":60000}`, false, false, false},
		{"ingress not idempotent", `{"timeout_ms":60000}`, true, false, false},
		{"bus record first", `{"timeout_ms":60000,"retry_on_timeout":true}`, false, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.putRoute("echo", tt.route)
			hung := e.instance(fakeinst.Options{AnnounceConn: true, Delay: time.Hour})
			e.waitPickable(1)
			bustest.Eventually(t, 10*time.Second, func() error {
				if v := e.router.Table().View("echo"); v == nil || v.Route.Timeout != time.Minute {
					return errors.New("route not in force")
				}
				return nil
			})
			got := make(chan answer, 1)
			sent := time.Now()
			if tt.http {
				srv := httptest.NewServer(e.router.Ingress())
				defer srv.Close()
				go func() { got <- ingressAnswer(srv.URL + "/echo/say") }()
			} else {
				go func() { got <- busAnswer(e.NC, subjects.Route("echo", "say")) }()
			}
			bustest.Eventually(t, 10*time.Second, func() error {
				if hung.Inflight() != 1 {
					return errors.New("the request has not reached the hung instance")
				}
				return nil
			})
			// The same event from a node that does not own the instance
			// ends nothing. (The healthy instance comes in by a later
			// turn of the table's loop, so once it is pickable, an
			// attempt the forgery ended would have been counted.)
			forged, _ := json.Marshal(events.HealthEvent{ID: hung.ID, Service: "echo", Status: events.Critical, Previous: events.Passing,
				Reason: events.DisconnectReason("Client Closed"), Node: uuid.NewString(), TS: time.Now().UTC()})
			if err := e.NC.Publish(subjects.Health("echo", hung.ID), forged); err != nil {
				t.Fatal(err)
			}
			bustest.Eventually(t, 10*time.Second, func() error {
				if e.counter(`hail_router_rejected_total{reason="bad_event"}`) == 0 {
					return errors.New("forged event not taken yet")
				}
				return nil
			})
			good := e.instance(fakeinst.Options{AnnounceConn: true})
			e.waitPickable(2)
			for _, outcome := range []string{"ok", "timeout", "unavailable", "canceled"} {
				if n := e.counter(fmt.Sprintf(`hail_router_requests_total{service="echo",endpoint="say",outcome=%q}`, outcome)); n != 0 {
					t.Fatalf("a forged disconnected event ended the attempt: %v %s", n, outcome)
				}
			}
			if tt.recordFirst {
				// Silent, it is critical by its heartbeats (not closed:
				// the attempt still waits); then the owner's event.
				hung.Silence()
				bustest.Eventually(t, 30*time.Second, func() error {
					rec, err := e.Record(events.InstanceKey("echo", hung.ID))
					if err != nil || rec.Status != events.Critical {
						return fmt.Errorf("record %s %v", rec.Status, err)
					}
					return nil
				})
				e.waitPickable(1)
				ev, _ := json.Marshal(events.HealthEvent{ID: hung.ID, Service: "echo", Status: events.Critical, Previous: events.Critical,
					Reason: events.DisconnectReason("Client Closed"), Node: e.owner("echo", hung.ID), TS: time.Now().UTC()})
				if err := e.NC.Publish(subjects.Health("echo", hung.ID), ev); err != nil {
					t.Fatal(err)
				}
			} else {
				hung.Kill() // its connection closes: the owner's event follows
			}
			var a answer
			select {
			case a = <-got:
			case <-time.After(10 * time.Second):
				t.Fatal("no answer within 10 s: the attempt waits for its timeout (20 s)")
			}
			t.Logf("answered %+v %s after it was sent", a, time.Since(sent).Round(time.Millisecond))
			switch {
			case tt.retry && (a.code != 200 || a.instance != good.ID):
				t.Errorf("answer %+v, want 200 from %s (the retry)", a, good.ID)
			case !tt.retry && (a.code != events.CodeTimeout || !strings.Contains(a.text, "connection closed")):
				t.Errorf("answer %+v, want 504 saying the connection closed", a)
			}
		})
	}
}

// waitPickable waits until the router offers n instances of echo.say.
func (e *env) waitPickable(n int) {
	e.T.Helper()
	bustest.Eventually(e.T, 10*time.Second, func() error {
		if got := e.pickable(); got != n {
			return fmt.Errorf("%d pickable, want %d", got, n)
		}
		return nil
	})
}

func busAnswer(nc *nats.Conn, subject string) answer {
	m, err := nc.Request(subject, []byte("hi"), time.Minute)
	if err != nil {
		return answer{text: err.Error()}
	}
	if code, text, isErr := events.ReplyError(m); isErr {
		return answer{code: code, text: text}
	}
	return answer{code: 200, instance: m.Header.Get(events.HeaderInstance)}
}

func ingressAnswer(url string) answer {
	resp, err := http.Post(url, "text/plain", strings.NewReader("hi"))
	if err != nil {
		return answer{text: err.Error()}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return answer{code: resp.StatusCode, instance: resp.Header.Get(events.HeaderInstance), text: string(body)}
}
