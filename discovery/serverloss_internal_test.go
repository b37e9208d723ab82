package discovery

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/heartbeat"
)

// Each row is one heartbeat round with server S lost 11 s before it
// started (its window from 12 s before to 1 s after the round's start):
// whose silence is held (its server went away as it fell
// silent, for serverLossGrace at most) and whose is judged as usual.
func TestDecideRoundServerLost(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 14, 0, 0, 0, time.UTC)
	timing := Timing{
		Heartbeat:        Heartbeat{Interval: time.Second, Timeout: 500 * time.Millisecond, MissedToCritical: 3, AnsweredToPassing: 1},
		DeregisterAfter:  time.Minute,
		SelfPreservation: SelfPreservation{Share: 0.5, MinFailures: 5, MaxDuration: 30 * time.Second, SteadyAfter: time.Minute},
	}
	lost := map[string]lossWindow{"S": {From: t0.Add(-12 * time.Second), To: t0.Add(time.Second)}}
	// on is an instance on server, registered registered ago, that missed
	// failures heartbeats in a row since silent ago (never silent: 0).
	on := func(server string, registered time.Duration, failures int, silent time.Duration) instanceState {
		st := instanceState{Judge: heartbeat.State{Status: events.Passing, Failures: failures}, Answered: true, Server: server, RegisteredAt: t0.Add(-registered)}
		if silent > 0 {
			st.SilentSince, st.SilentOn = t0.Add(-silent), server
		}
		return st
	}
	moved := func(st instanceState, to string) instanceState { st.Server = to; return st }
	ok := func(id string) heartbeat.Result {
		return heartbeat.Result{ID: id, RTT: time.Millisecond, Reply: events.HeartbeatReply{ID: id, Status: events.Passing}}
	}
	miss := func(id string) heartbeat.Result {
		return heartbeat.Result{ID: id, Err: errors.New("timeout"), RTT: 500 * time.Millisecond}
	}
	ids := func(prefix string, n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%s%d", prefix, i)
		}
		return out
	}
	tests := []struct {
		name  string
		owned map[string]instanceState
		// answer: the ids that answer; the others miss.
		answer []string
		// held: the ids held, silent on S; critical: the transitions.
		held, critical []string
		preserve       bool
	}{
		{"young instances of the lost server, two misses in: held",
			map[string]instanceState{"a": on("S", time.Second, 2, time.Second), "b": on("S", time.Second, 0, 0)}, nil,
			[]string{"a", "b"}, nil, false},
		{"held whatever they re-announced meanwhile (a restarted server's new id, its routes not back)",
			map[string]instanceState{"a": moved(on("S", time.Second, 2, time.Second), "S2")}, nil,
			[]string{"a"}, nil, false},
		{"held for serverLossGrace from the start of their silence at most: then judged",
			map[string]instanceState{"a": on("S", time.Second, 2, serverLossGrace)}, nil,
			nil, []string{"a"}, false},
		{"a hang on a live server is judged as usual",
			map[string]instanceState{"hung": on("L", time.Second, 2, 2*time.Second), "a": on("S", time.Second, 2, time.Second)}, nil,
			[]string{"a"}, []string{"hung"}, false},
		{"a silence that began before its server went away is its own: judged",
			map[string]instanceState{"hung": on("S", time.Second, 2, 15*time.Second)}, nil,
			nil, []string{"hung"}, false},
		{"an instance that announced no conn is judged",
			map[string]instanceState{"v1": on("", time.Second, 2, time.Second)}, nil,
			nil, []string{"v1"}, false},
		{"one that answers is passing, its silence over",
			map[string]instanceState{"a": on("S", time.Second, 2, time.Second)}, []string{"a"},
			nil, nil, false},
		{"steady instances of the lost server count toward no self-preservation",
			func() map[string]instanceState {
				m := map[string]instanceState{}
				for _, id := range ids("s", 6) {
					m[id] = on("S", time.Hour, 0, 0)
				}
				for _, id := range ids("o", 4) {
					m[id] = on("L", time.Hour, 0, 0)
				}
				return m
			}(), ids("o", 4),
			ids("s", 6), nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var results []heartbeat.Result
			for id := range tt.owned {
				if slices.Contains(tt.answer, id) {
					results = append(results, ok(id))
				} else {
					results = append(results, miss(id))
				}
			}
			d := decideRound(roundInput{Results: results, Owned: tt.owned, Timing: timing, Start: t0, Lost: lost})
			if (d.Preserve != "") != tt.preserve {
				t.Errorf("preserve %q, want %v", d.Preserve, tt.preserve)
			}
			var crit []string
			for _, tr := range d.Transitions {
				if tr.Next.Judge.Status == events.Critical {
					crit = append(crit, tr.ID)
				}
			}
			sort.Strings(crit)
			if !slices.Equal(crit, tt.critical) {
				t.Errorf("critical %v, want %v", crit, tt.critical)
			}
			if d.ServerHeld != len(tt.held) {
				t.Errorf("%d held, want %d", d.ServerHeld, len(tt.held))
			}
			for _, id := range tt.held {
				prior := tt.owned[id]
				st, judged := d.Judged[id]
				if !judged {
					st = prior // unchanged: held as it was
				}
				if st.Judge != prior.Judge {
					t.Errorf("%s judged %+v while held, was %+v", id, st.Judge, prior.Judge)
				}
				if st.SilentSince.IsZero() || st.SilentOn != "S" {
					t.Errorf("%s silent since %v on %q, want a silence on S", id, st.SilentSince, st.SilentOn)
				}
			}
			for _, id := range tt.answer {
				next, ok := d.Judged[id]
				for _, tr := range d.Transitions {
					if tr.ID == id {
						next, ok = tr.Next, true
					}
				}
				if !ok || !next.SilentSince.IsZero() || next.SilentOn != "" || next.Judge.Status != events.Passing {
					t.Errorf("%s answered: %+v, want passing and not silent", id, next)
				}
			}
		})
	}
}

// The subject of a server's going away is parsed, bounded and validated:
// only SHUTDOWN and LAMEDUCK of a well-formed server id.
func TestServerOf(t *testing.T) {
	tests := []struct {
		subject, id, kind string
		ok                bool
	}{
		{"$SYS.SERVER.NDXYZ123.SHUTDOWN", "NDXYZ123", "SHUTDOWN", true},
		{"$SYS.SERVER.NDXYZ123.LAMEDUCK", "NDXYZ123", "LAMEDUCK", true},
		{"$SYS.SERVER.NDXYZ123.STATSZ", "", "", false},
		{"$SYS.SERVER.ND-XYZ.SHUTDOWN", "", "", false},
		{"$SYS.SERVER..SHUTDOWN", "", "", false},
		{"$SYS.SERVER.NDXYZ123.SHUTDOWN.x", "", "", false},
		{"$SYS.ACCOUNT.HAIL.DISCONNECT", "", "", false},
		{"$SYS.SERVER." + strings.Repeat("N", 65) + ".SHUTDOWN", "", "", false},
	}
	for _, tt := range tests {
		id, kind, ok := serverOf(tt.subject)
		if id != tt.id || kind != tt.kind || ok != tt.ok {
			t.Errorf("serverOf(%q) = %q, %q, %v; want %q, %q, %v", tt.subject, id, kind, ok, tt.id, tt.kind, tt.ok)
		}
	}
}

func FuzzServerOf(f *testing.F) {
	for _, s := range []string{"$SYS.SERVER.N1.SHUTDOWN", "$SYS.SERVER.N1.LAMEDUCK", "$SYS.SERVER.*.SHUTDOWN", "$SYS.SERVER..", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, subject string) {
		id, kind, ok := serverOf(subject)
		if !ok {
			return
		}
		if c := (events.Conn{Server: id, Client: 1}); c.Validate() != nil {
			t.Errorf("%q: id %q is no server id", subject, id)
		}
		if want := "$SYS.SERVER." + id + "." + kind; subject != want {
			t.Errorf("%q parsed as %q", subject, want)
		}
	})
}

// What the node learns of servers going away: an event's window, a lame
// duck's longer one that the shutdown keeps from its start, the node's
// own connection moving, invalid subjects counted, windows forgotten once
// over.
func TestServerLosses(t *testing.T) {
	server := "S1"
	l := newServerLosses(metrics.NewSet(), func() string { return server }, slog.New(slog.DiscardHandler))
	slack := func() time.Duration { return time.Second }
	hear := l.hear(slack)
	t0 := time.Now()
	if got := l.snapshot(t0, time.Second); got != nil {
		t.Fatalf("lost %v before anything went away", got)
	}
	hear(&nats.Msg{Subject: "$SYS.SERVER.LD.LAMEDUCK"})
	hear(&nats.Msg{Subject: "$SYS.SERVER.X.SHUTDOWN"})
	hear(&nats.Msg{Subject: "$SYS.SERVER.bad-id.SHUTDOWN"})
	if l.invalid.Get() != 1 || l.shutdown.Get() != 1 || l.lameDuck.Get() != 1 {
		t.Errorf("counted invalid %d, shutdown %d, lame duck %d", l.invalid.Get(), l.shutdown.Get(), l.lameDuck.Get())
	}
	got := l.snapshot(time.Now(), time.Second)
	if w := got["X"]; w.To.Sub(w.From) != serverLossGrace+time.Second {
		t.Errorf("shutdown window %v, want from the slack before to the grace after", w)
	}
	ld := got["LD"]
	if ld.To.Sub(ld.From) != lameDuckWindow+time.Second {
		t.Errorf("lame duck window %v", ld)
	}
	hear(&nats.Msg{Subject: "$SYS.SERVER.LD.SHUTDOWN"})
	got = l.snapshot(time.Now(), time.Second)
	if w := got["LD"]; !w.From.Equal(ld.From) || !w.To.Before(ld.To) {
		t.Errorf("lame duck then shutdown: %v, want from the lame duck to the shutdown's grace", w)
	}

	// The node's own connection moves from S1 to S2.
	server = "S2"
	moved := time.Now()
	got = l.snapshot(moved, time.Second)
	if w, ok := got["S1"]; !ok || !w.contains(t0) || !w.contains(moved) || l.ownMoved.Get() != 1 {
		t.Errorf("own connection moved: %v (%v), want S1 lost from the round before", w, ok)
	}
	// A disconnected node (no server) moves nothing.
	server = ""
	l.snapshot(moved, time.Second)
	server = "S2"
	l.snapshot(moved, time.Second)
	if l.ownMoved.Get() != 1 {
		t.Errorf("moved %d times, want 1", l.ownMoved.Get())
	}
	// Long after, every window is over.
	got = l.snapshot(moved.Add(3*serverLossGrace), time.Second)
	if len(got) != 0 {
		t.Errorf("windows over still held: %v", got)
	}
}
