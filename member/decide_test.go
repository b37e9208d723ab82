package member

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
)

var (
	most = func(d time.Duration) time.Duration { return d - 1 } // the top of the jitter
	none = func(time.Duration) time.Duration { return 0 }
)

const never = time.Duration(-1)

// step is one event in a member's life, at an offset from the start, and
// when it announces next afterwards (never: not until something changes).
type step struct {
	at   time.Duration
	do   string // begin, beat, discover, changed, or an outcome: taken, busy, unanswered, refused
	arg  time.Duration
	wake time.Duration
	// unheard, when set, wants the announce due at `at` to be (or not be)
	// for want of a heartbeat; checked before the step's event.
	unheard *bool
}

func yes() *bool { b := true; return &b }
func no() *bool  { b := false; return &b }

func TestDecisions(t *testing.T) {
	const s, ms = time.Second, time.Millisecond
	tests := []struct {
		name   string
		jitter func(time.Duration) time.Duration
		steps  []step
	}{
		{"taken, then heartbeats keep it quiet", most, []step{
			{at: 0, do: "begin", wake: 0},
			{at: 0, do: "taken", wake: 3 * s},
			{at: 1 * s, do: "beat", wake: 4 * s},
			{at: 2 * s, do: "beat", wake: 5 * s},
			{at: 2 * s, do: "beat", wake: 5 * s}, // the same beat again changes nothing
		}},
		{"no heartbeat for 3 intervals: announce again", most, []step{
			{at: 0, do: "begin", wake: 0},
			{at: 0, do: "taken", wake: 3 * s},
			{at: 1 * s, do: "beat", wake: 4 * s},
			{at: 4 * s, do: "taken", wake: 7 * s, unheard: yes()},
		}},
		{"a 4xx is final: no discover, heartbeat or time brings it back", most, []step{
			{at: 0, do: "begin", wake: 0},
			{at: 0, do: "refused", wake: never},
			{at: 1 * s, do: "discover", arg: 500 * ms, wake: never},
			{at: 2 * s, do: "beat", wake: never},
			{at: 5 * s, do: "changed", wake: 5 * s}, // a new announce may pass
			{at: 5 * s, do: "taken", wake: 8 * s},
		}},
		{"a 503 without retry_after_ms backs off, exponential with full jitter", most, []step{
			{at: 0, do: "begin", wake: 0},
			{at: 0, do: "busy", wake: 6*s - 1},                     // 3 intervals + up to 3
			{at: 6 * s, do: "busy", wake: 6*s + 12*s - 1},          // + up to 9
			{at: 18 * s, do: "busy", wake: 18*s + 24*s - 1},        // + up to 21
			{at: 42 * s, do: "busy", wake: 42*s + 48*s - 1},        // + up to 45
			{at: 90 * s, do: "busy", wake: 90*s + time.Minute - 1}, // capped
		}},
		{"a 503 with retry_after_ms comes back after it, spread by half of it", most, []step{
			{at: 0, do: "begin", wake: 0},
			{at: 0, do: "busy", arg: 500 * ms, wake: 750 * ms},
			{at: 750 * ms, do: "busy", arg: 2 * s, wake: 750*ms + 3*s},
		}},
		{"a 503's retry_after_ms without jitter", none, []step{
			{at: 0, do: "begin", wake: 0},
			{at: 0, do: "busy", arg: 500 * ms, wake: 500 * ms},
		}},
		{"a timeout retries with backoff; a heartbeat resets it", most, []step{
			{at: 0, do: "begin", wake: 0},
			{at: 0, do: "taken", wake: 3 * s},
			{at: 3 * s, do: "unanswered", wake: 9*s - 1, unheard: yes()},
			{at: 9 * s, do: "unanswered", wake: 21*s - 1},
			{at: 10 * s, do: "beat", wake: 13 * s},
			{at: 13 * s, do: "unanswered", wake: 19*s - 1, unheard: yes()}, // from 1 again
		}},
		{"hail.discover: announce within its spread, whatever the heartbeats", most, []step{
			{at: 0, do: "begin", wake: 0},
			{at: 0, do: "taken", wake: 3 * s},
			{at: 1 * s, do: "discover", arg: 500 * ms, wake: 1500 * ms},
			{at: 1200 * ms, do: "beat", wake: 1500 * ms},
			{at: 1500 * ms, do: "taken", wake: 4500 * ms, unheard: no()},
		}},
		{"an earlier ask stands", none, []step{
			{at: 0, do: "begin", wake: 0},
			{at: 0, do: "taken", wake: 3 * s},
			{at: 1 * s, do: "discover", arg: 2 * s, wake: 1 * s},
			{at: 1100 * ms, do: "discover", arg: 2 * s, wake: 1 * s},
		}},
		{"an announce not taken falls back to the heartbeat rule after a discover", none, []step{
			{at: 0, do: "begin", wake: 0},
			{at: 0, do: "taken", wake: 3 * s},
			{at: 1 * s, do: "discover", arg: 0, wake: 1 * s},
			{at: 1 * s, do: "busy", wake: 4 * s},
			{at: 2 * s, do: "beat", wake: 5 * s}, // discovery has it: no retry needed
		}},
		{"a change is sent until taken, whatever the heartbeats", none, []step{
			{at: 0, do: "begin", wake: 0},
			{at: 0, do: "taken", wake: 3 * s},
			{at: 1 * s, do: "changed", wake: 1 * s},
			{at: 1 * s, do: "busy", wake: 4 * s, unheard: no()},
			{at: 2 * s, do: "beat", wake: 4 * s}, // the record heartbeated is the old one
			{at: 4 * s, do: "taken", wake: 7 * s, unheard: no()},
		}},
		{"no discovery at start: backing off until a discover", none, []step{
			{at: 0, do: "begin", wake: 0},
			{at: 0, do: "unanswered", wake: 3 * s, unheard: no()},
			{at: 1 * s, do: "discover", arg: time.Second, wake: 1 * s},
			{at: 1 * s, do: "taken", wake: 4 * s},
		}},
	}
	const interval = time.Second
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t0 := time.Unix(1_000_000, 0)
			var st State
			for i, sp := range tt.steps {
				now := t0.Add(sp.at)
				if sp.unheard != nil {
					if !Due(st, now) {
						t.Fatalf("step %d (%s at %v): not due", i, sp.do, sp.at)
					}
					if got := Unheard(st, now); got != *sp.unheard {
						t.Fatalf("step %d (%s at %v): unheard %v, want %v", i, sp.do, sp.at, got, *sp.unheard)
					}
				}
				switch sp.do {
				case "begin":
					st = Begin(now)
				case "beat":
					st = Beat(st, now, interval)
				case "discover":
					st = Discovered(st, now, sp.arg, tt.jitter)
				case "changed":
					st = Changed(st, now)
				default:
					kinds := map[string]Kind{"taken": Taken, "busy": Busy, "unanswered": Unanswered, "refused": Refused}
					k, ok := kinds[sp.do]
					if !ok {
						t.Fatalf("step %d: unknown %q", i, sp.do)
					}
					if !Due(st, now) {
						t.Fatalf("step %d (%s at %v): an announce sent while not due", i, sp.do, sp.at)
					}
					st = Announced(st, Outcome{Kind: k, RetryAfter: sp.arg}, now, interval, tt.jitter)
				}
				wake := Wake(st)
				switch {
				case sp.wake == never && !wake.IsZero():
					t.Fatalf("step %d (%s at %v): wakes at %v, want never", i, sp.do, sp.at, wake.Sub(t0))
				case sp.wake != never && (wake.IsZero() || wake.Sub(t0) != sp.wake):
					t.Fatalf("step %d (%s at %v): wakes at %v (zero %v), want %v", i, sp.do, sp.at, wake.Sub(t0), wake.IsZero(), sp.wake)
				}
				if sp.wake != never && (Due(st, t0.Add(sp.wake)) != true || (sp.wake > sp.at && Due(st, t0.Add(sp.wake-1)))) {
					t.Fatalf("step %d (%s at %v): Due disagrees with Wake", i, sp.do, sp.at)
				}
			}
		})
	}
}

func TestClassify(t *testing.T) {
	reply := func(code int, body string) *nats.Msg {
		m := events.ErrorMsg(code, "why")
		if body != "" {
			m.Data = []byte(body)
		}
		return m
	}
	tests := []struct {
		name       string
		msg        *nats.Msg
		err        error
		kind       Kind
		retryAfter time.Duration
	}{
		{"ok", &nats.Msg{Data: []byte(`{"ok":true}`)}, nil, Taken, 0},
		{"timeout", nil, context.DeadlineExceeded, Unanswered, 0},
		{"no discovery", nil, nats.ErrNoResponders, Unanswered, 0},
		{"closed connection", nil, nats.ErrConnectionClosed, Unanswered, 0},
		{"400 bad announce", reply(400, ""), nil, Refused, 0},
		{"403 not allowed", reply(403, ""), nil, Refused, 0},
		{"404", reply(404, ""), nil, Refused, 0},
		{"408 means later", reply(408, ""), nil, Busy, 0},
		{"429 means later", reply(429, ""), nil, Busy, 0},
		{"500", reply(500, ""), nil, Busy, 0},
		{"503 busy", reply(503, ""), nil, Busy, 0},
		{"503 with retry_after_ms", reply(503, `{"ok":false,"error":"busy","code":503,"retry_after_ms":250}`), nil, Busy, 250 * time.Millisecond},
		{"503 with a huge retry_after_ms", reply(503, `{"retry_after_ms":99999999999}`), nil, Busy, ReannounceCap},
		{"503 with a negative retry_after_ms", reply(503, `{"retry_after_ms":-5}`), nil, Busy, 0},
		{"503 with a body that is not JSON", reply(503, `busy`), nil, Busy, 0},
		{"discovery's own busy answer", events.BusyMsg("discovery busy", 1500*time.Millisecond), nil, Busy, 1500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Classify(tt.msg, tt.err)
			if o.Kind != tt.kind || o.RetryAfter != tt.retryAfter {
				t.Fatalf("got %s retry after %v, want %s retry after %v", o.Kind, o.RetryAfter, tt.kind, tt.retryAfter)
			}
			if (o.Err == nil) != (tt.kind == Taken) {
				t.Errorf("err %v for %s", o.Err, o.Kind)
			}
			if (tt.kind == Refused) != errors.Is(o.Err, ErrRefused) {
				t.Errorf("err %v: ErrRefused only for a refusal", o.Err)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		interval time.Duration
		failed   int
		jitter   func(time.Duration) time.Duration
		want     time.Duration
	}{
		{time.Second, 0, most, 3 * time.Second}, // the first: three intervals, no jitter
		{time.Second, 1, none, 3 * time.Second},
		{time.Second, 1, most, 6*time.Second - 1},
		{time.Second, 2, most, 12*time.Second - 1},
		{time.Second, 4, most, 48*time.Second - 1},
		{time.Second, 5, most, time.Minute - 1}, // capped
		{time.Second, 40, most, time.Minute - 1},
		{30 * time.Second, 1, most, 90 * time.Second}, // three intervals already over the cap
	}
	for _, tt := range tests {
		if got := Backoff(tt.interval, tt.failed, tt.jitter); got != tt.want {
			t.Errorf("interval %v, %d failed: %v, want %v", tt.interval, tt.failed, got, tt.want)
		}
	}
}

func TestTimeoutAndSpread(t *testing.T) {
	for _, tt := range []struct{ interval, want time.Duration }{
		{100 * time.Millisecond, 2 * time.Second},
		{time.Second, 2 * time.Second},
		{5 * time.Second, 5 * time.Second},
	} {
		if got := AnnounceTimeout(tt.interval); got != tt.want {
			t.Errorf("AnnounceTimeout(%v) = %v, want %v", tt.interval, got, tt.want)
		}
	}
	for _, tt := range []struct {
		data     string
		interval time.Duration
		want     time.Duration
	}{
		{`{"spread_ms":300}`, time.Second, 300 * time.Millisecond},
		{`{}`, time.Second, 500 * time.Millisecond},
		{`{}`, 10 * time.Second, time.Second},
		{`not json`, 200 * time.Millisecond, 100 * time.Millisecond},
		{`{"spread_ms":-1}`, time.Second, 500 * time.Millisecond},
	} {
		if got := Spread([]byte(tt.data), tt.interval); got != tt.want {
			t.Errorf("Spread(%s, %v) = %v, want %v", tt.data, tt.interval, got, tt.want)
		}
	}
}
