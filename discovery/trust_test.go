package discovery_test

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/internal/testlog"
	instside "github.com/hailsd/hail/member"
)

// A re-announce that changes only scoped is taken: the record says
// scoped, the heartbeats go to the scoped subject, and the instance that
// answers only there stays passing.
func TestReannounceChangesScoped(t *testing.T) {
	e := newEnv(t)
	e.StartNode(discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 100 * time.Millisecond, Timeout: 80 * time.Millisecond}}})
	f := fakeinst.Start(t, e.URL, fakeinst.Options{Service: "echo", Conn: e.NC, Manual: true})
	e.mustAnnounce(f)
	key := events.InstanceKey("echo", f.ID)
	e.waitStatus(key, events.Passing, 2*time.Second)

	// From now on it answers heartbeats on the scoped subject only.
	f.Silence()
	var beats atomic.Int64
	r, err := instside.Respond(e.NC, subjects, events.HeartbeatTarget("echo", f.ID, true), func() events.HeartbeatReply {
		beats.Add(1)
		return events.HeartbeatReply{Status: events.Passing}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	a := events.Announce{ID: f.ID, Service: "echo", Version: "1.0.0", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100, Scoped: true}
	m := e.request(subjects.Announce("echo"), mustJSON(t, a))
	if code, text, isErr := events.ReplyError(m); isErr {
		t.Fatalf("scoped re-announce answered %d %s", code, text)
	}
	bustest.Eventually(t, 5*time.Second, func() error {
		rec, err := e.Record(key)
		if err != nil {
			return err
		}
		if !rec.Scoped {
			return errors.New("the record still says scoped=false")
		}
		return nil
	})
	// Ten rounds answered on the scoped subject: still passing (three
	// missed on the old subject would have made it critical).
	bustest.Eventually(t, 10*time.Second, func() error {
		if n := beats.Load(); n < 10 {
			return fmt.Errorf("%d heartbeats on the scoped subject", n)
		}
		return nil
	})
	if rec, _ := e.Record(key); rec.Status != events.Passing {
		t.Errorf("status %s after the scoped re-announce", rec.Status)
	}
}

// A deregister's reason is cut to discovery.MaxReason bytes, on a UTF-8
// boundary, before it reaches HAIL_EVENTS or a log: 872 deregisters with
// 60 KB reasons added 52.8 MB to the stream.
func TestDeregisterReasonBounded(t *testing.T) {
	e := newEnv(t)
	var logs testlog.Buffer
	e.StartNode(discovery.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	h := e.watchHealth()
	f := e.fake("echo")
	e.mustAnnounce(f)
	long := strings.Repeat("é", 30<<10) // 60 KB; a cut at an even byte would split none, so one byte first
	d := events.Deregister{ID: f.ID, Service: "echo", Reason: "x" + long}
	m := e.request(subjects.Deregister("echo"), mustJSON(t, d))
	if code, text, isErr := events.ReplyError(m); isErr {
		t.Fatalf("deregister answered %d %s", code, text)
	}
	ev := h.wait(t, f.ID, events.Deregistered, 5*time.Second)
	if len(ev.Reason) > discovery.MaxReason || !utf8.ValidString(ev.Reason) || !strings.HasPrefix(d.Reason, ev.Reason) || len(ev.Reason) < discovery.MaxReason-1 {
		t.Errorf("deregistered event's reason is %d bytes (valid UTF-8: %v), want the first %d of the reason", len(ev.Reason), utf8.ValidString(ev.Reason), discovery.MaxReason)
	}
	if n := len(logs.String()); n > 4<<10 {
		t.Errorf("%d bytes of log for one registration and one deregister", n)
	}
}

// A flood of rejected control messages makes a few log lines, not one
// each: one per reason every 10 s (the metrics count each).
func TestRejectionsLoggedAtABoundedRate(t *testing.T) {
	e := newEnv(t)
	var logs testlog.Buffer
	set := metrics.NewSet()
	e.StartNode(discovery.Config{Metrics: set, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	const flood = 300
	for range flood {
		if err := e.NC.Publish(subjects.Announce("echo"), []byte("{}")); err != nil {
			t.Fatal(err)
		}
		if err := e.NC.PublishRequest(subjects.Announce("echo"), "_INBOX.router.x.1", []byte("{}")); err != nil {
			t.Fatal(err)
		}
		if err := e.NC.PublishRequest(subjects.Announce("echo"), "hail.health.echo.x", []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	bustest.Eventually(t, 10*time.Second, func() error {
		var n uint64
		for _, reason := range []string{"invalid", "schema", "malformed", "foreign_reply", "reply_subject"} {
			n += set.GetOrCreateCounter(fmt.Sprintf(`hail_discovery_rejected_total{reason=%q}`, reason)).Get()
		}
		if n < 3*flood {
			return fmt.Errorf("%d of %d refusals counted", n, 3*flood)
		}
		return nil
	})
	if n := strings.Count(logs.String(), "level=WARN"); n > 5 {
		t.Errorf("%d warnings for %d refusals of 3 kinds:\n%s", n, 3*flood, logs.String())
	}
}
