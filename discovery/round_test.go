package discovery

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/heartbeat"
)

// Each row is one heartbeat round: the owned instances' states before it,
// the results, and what the node must do.
func TestDecideRound(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	timing := Timing{
		Heartbeat:        Heartbeat{Interval: time.Second, Timeout: 500 * time.Millisecond, MissedToCritical: 3, AnsweredToPassing: 1},
		DeregisterAfter:  time.Minute,
		SelfPreservation: SelfPreservation{Share: 0.5, MinFailures: 5, MaxDuration: 30 * time.Second, SteadyAfter: time.Minute},
	}
	passing := instanceState{Judge: heartbeat.State{Status: events.Passing}, Answered: true}
	missedTwice := instanceState{Judge: heartbeat.State{Status: events.Passing, Failures: 2}, Answered: true}
	neverAnswered := instanceState{Judge: heartbeat.State{Status: events.Passing, Failures: 2}}
	// silentFor is a steady instance (registered an hour ago) silent for d
	// with failures misses on record (a preserved round records none).
	silentFor := func(d time.Duration, failures int) instanceState {
		return instanceState{Judge: heartbeat.State{Status: events.Passing, Failures: failures}, Answered: true,
			RegisteredAt: t0.Add(-time.Hour), SilentSince: t0.Add(-d)}
	}
	// young is an instance registered d ago that has answered.
	young := func(d time.Duration) instanceState {
		return instanceState{Judge: heartbeat.State{Status: events.Passing}, Answered: true, RegisteredAt: t0.Add(-d)}
	}
	critical := func(since time.Duration) instanceState {
		return instanceState{Judge: heartbeat.State{Status: events.Critical}, CriticalSince: t0.Add(-since)}
	}
	ok := func(id string) heartbeat.Result {
		return heartbeat.Result{ID: id, RTT: time.Millisecond, Reply: events.HeartbeatReply{ID: id, Status: events.Passing}}
	}
	reports := func(id string, s events.Status) heartbeat.Result {
		r := ok(id)
		r.Reply.Status = s
		return r
	}
	miss := func(id string) heartbeat.Result {
		return heartbeat.Result{ID: id, Err: errors.New("timeout"), RTT: 500 * time.Millisecond}
	}
	late := func(id string, s events.Status) heartbeat.Result {
		r := miss(id)
		r.Late = s
		return r
	}
	bad := func(id string) heartbeat.Result {
		return heartbeat.Result{ID: id, Err: fmt.Errorf("%w: garbage", heartbeat.ErrBadReply)}
	}
	void := func(id string) heartbeat.Result { return heartbeat.Result{ID: id, Err: heartbeat.ErrDisconnected} }
	chk := func(name string, s events.Status, out string) events.CheckResult {
		return events.CheckResult{Name: name, Kind: events.CheckHTTP, Status: s, Output: out}
	}
	withChecks := func(r heartbeat.Result, cs ...events.CheckResult) heartbeat.Result {
		r.Reply.Checks = cs
		r.Reply.Status = events.WorstStatus(cs)
		return r
	}
	checked := func(st instanceState, cs ...events.CheckResult) instanceState {
		st.Checks = cs
		return st
	}
	ids := func(prefix string, n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%s%d", prefix, i)
		}
		return out
	}
	each := func(names []string, f func(string) heartbeat.Result) []heartbeat.Result {
		out := make([]heartbeat.Result, len(names))
		for i, n := range names {
			out[i] = f(n)
		}
		return out
	}
	allPassing := func(names ...[]string) map[string]instanceState {
		m := map[string]instanceState{}
		for _, ns := range names {
			for _, n := range ns {
				m[n] = passing
			}
		}
		return m
	}
	with := func(m map[string]instanceState, names []string, st instanceState) map[string]instanceState {
		for _, n := range names {
			m[n] = st
		}
		return m
	}
	critical6 := func(prefix string) []string {
		out := make([]string, 6)
		for i, id := range ids(prefix, 6) {
			out[i] = id + ":critical"
		}
		return out
	}

	type want struct {
		preserve    string   // substring; "" for a judged round
		transitions []string // "id:status"
		removals    []string
		sent        int
		missed      int
		badReplies  int
		void        int
		rtts        int
		outlasted   int
	}
	tests := []struct {
		name    string
		owned   map[string]instanceState
		results []heartbeat.Result
		want    want
	}{
		{"an answer keeps passing, nothing written",
			map[string]instanceState{"a": passing}, []heartbeat.Result{ok("a")},
			want{sent: 1, rtts: 1}},
		{"the third miss in a row makes critical",
			map[string]instanceState{"a": missedTwice}, []heartbeat.Result{miss("a")},
			want{transitions: []string{"a:critical"}, sent: 1, missed: 1}},
		{"a late answer to the round before starts the run of misses again",
			map[string]instanceState{"a": missedTwice}, []heartbeat.Result{late("a", events.Passing)},
			want{sent: 1, missed: 1}},
		{"a late answer brings critical back, this round's miss notwithstanding",
			map[string]instanceState{"a": critical(time.Second)}, []heartbeat.Result{late("a", events.Passing)},
			want{transitions: []string{"a:passing"}, sent: 1, missed: 1}},
		{"a late answer's reported warning counts",
			map[string]instanceState{"a": missedTwice}, []heartbeat.Result{late("a", events.Warning)},
			want{transitions: []string{"a:warning"}, sent: 1, missed: 1}},
		{"a reported warning counts at once",
			map[string]instanceState{"a": passing}, []heartbeat.Result{reports("a", events.Warning)},
			want{transitions: []string{"a:warning"}, sent: 1, rtts: 1}},
		{"an answer brings critical back",
			map[string]instanceState{"a": critical(time.Second)}, []heartbeat.Result{ok("a")},
			want{transitions: []string{"a:passing"}, sent: 1, rtts: 1}},
		{"critical for deregister_after is removed",
			map[string]instanceState{"a": critical(time.Minute), "b": critical(59 * time.Second)}, []heartbeat.Result{miss("a"), miss("b")},
			want{removals: []string{"a"}, sent: 2, missed: 2}},
		{"a bad reply is a miss, counted apart",
			map[string]instanceState{"a": missedTwice}, []heartbeat.Result{bad("a")},
			want{transitions: []string{"a:critical"}, sent: 1, missed: 1, badReplies: 1}},
		{"results for instances no longer owned are ignored",
			map[string]instanceState{"a": passing}, []heartbeat.Result{ok("a"), miss("gone")},
			want{sent: 1, rtts: 1}},
		{"every result void: the node lost NATS, nothing judged",
			map[string]instanceState{"a": missedTwice, "b": missedTwice}, []heartbeat.Result{void("a"), void("b")},
			want{preserve: "lost its NATS connection", void: 2}},
		{"every unanswered result void because the node read too slowly: nothing judged",
			map[string]instanceState{"a": missedTwice, "b": missedTwice},
			[]heartbeat.Result{{ID: "a", Err: heartbeat.ErrOverloaded}, {ID: "b", Err: heartbeat.ErrOverloaded}},
			want{preserve: "too slow to read its heartbeat answers", void: 2}},
		{"some unread: the answered judged, the unread not",
			map[string]instanceState{"a": missedTwice, "b": missedTwice},
			[]heartbeat.Result{{ID: "a", Err: heartbeat.ErrOverloaded}, ok("b")},
			want{sent: 1, rtts: 1, void: 1}},
		{"some void: judged without them",
			map[string]instanceState{"a": missedTwice, "b": missedTwice}, []heartbeat.Result{void("a"), miss("b")},
			want{transitions: []string{"b:critical"}, sent: 1, missed: 1, void: 1}},
		{"most live instances failing at once: self-preservation",
			allPassing(ids("f", 6), ids("o", 4)), append(each(ids("f", 6), miss), each(ids("o", 4), ok)...),
			want{preserve: "6 of 10 live instances failing", rtts: 4}},
		{"half failing is not more than half: judged",
			allPassing(ids("f", 5), ids("o", 5)), append(each(ids("f", 5), miss), each(ids("o", 5), ok)...),
			want{sent: 10, missed: 5, rtts: 5}},
		{"below the minimum failures: judged",
			allPassing(ids("f", 4)), each(ids("f", 4), miss),
			want{sent: 4, missed: 4}},
		{"answering while a check fails: never removed, however long critical",
			map[string]instanceState{"a": checked(critical(time.Hour), chk("health", events.Critical, "503"))},
			[]heartbeat.Result{withChecks(ok("a"), chk("health", events.Critical, "503 again"))},
			want{sent: 1, rtts: 1}},
		{"a check's output alone changes: nothing written",
			map[string]instanceState{"a": checked(passing, chk("health", events.Passing, "took 3ms"))},
			[]heartbeat.Result{withChecks(ok("a"), chk("health", events.Passing, "took 9ms"))},
			want{sent: 1, rtts: 1}},
		{"a check flips: the status and the checks are written",
			map[string]instanceState{"a": checked(passing, chk("health", events.Passing, ""))},
			[]heartbeat.Result{withChecks(ok("a"), chk("health", events.Critical, "503"))},
			want{transitions: []string{"a:critical+checks"}, sent: 1, rtts: 1}},
		{"a check flips under a worse one: the checks alone are written",
			map[string]instanceState{"a": checked(critical(0), chk("db", events.Critical, ""), chk("health", events.Passing, ""))},
			[]heartbeat.Result{withChecks(ok("a"), chk("db", events.Critical, ""), chk("health", events.Warning, "429"))},
			want{transitions: []string{"a:checks"}, sent: 1, rtts: 1}},
		{"a check added: written",
			map[string]instanceState{"a": passing},
			[]heartbeat.Result{withChecks(ok("a"), chk("health", events.Passing, ""))},
			want{transitions: []string{"a:checks"}, sent: 1, rtts: 1}},
		{"instances that never answered cannot make the node preserve: they are judged",
			func() map[string]instanceState {
				m := allPassing(ids("o", 4))
				for _, id := range ids("n", 10) {
					m[id] = neverAnswered
				}
				return m
			}(), append(each(ids("n", 10), miss), each(ids("o", 4), ok)...),
			want{transitions: []string{"n0:critical", "n1:critical", "n2:critical", "n3:critical", "n4:critical", "n5:critical", "n6:critical", "n7:critical", "n8:critical", "n9:critical"}, sent: 14, missed: 10, rtts: 4}},
		{"self-preservation starts: steady instances fall silent together, their silence noted, not judged",
			with(allPassing(ids("o", 4)), ids("f", 6), silentFor(0, 0)), append(each(ids("f", 6), miss), each(ids("o", 4), ok)...),
			want{preserve: "6 of 10 live instances failing", rtts: 4}},
		{"it stays while they are silent for less than max_duration",
			with(allPassing(ids("o", 4)), ids("f", 6), silentFor(29*time.Second, 0)), append(each(ids("f", 6), miss), each(ids("o", 4), ok)...),
			want{preserve: "6 of 10 live instances failing", rtts: 4}},
		{"it ends at max_duration: the silent are judged as usual",
			with(allPassing(ids("o", 4)), ids("f", 6), silentFor(30*time.Second, 2)), append(each(ids("f", 6), miss), each(ids("o", 4), ok)...),
			want{transitions: critical6("f"), sent: 10, missed: 6, rtts: 4, outlasted: 6}},
		{"it ends when they answer again",
			with(allPassing(ids("o", 4)), ids("f", 6), silentFor(10*time.Second, 0)), each(append(ids("f", 6), ids("o", 4)...), ok),
			want{sent: 10, rtts: 10}},
		{"one killed while it lasts is judged max_duration after it fell silent, the others still held",
			with(with(allPassing(ids("o", 3)), ids("f", 6), silentFor(10*time.Second, 0)), []string{"killed"}, silentFor(30*time.Second, 2)),
			append(append(each(ids("f", 6), miss), miss("killed")), each(ids("o", 3), ok)...),
			want{preserve: "6 of 9 live instances failing", transitions: []string{"killed:critical"}, sent: 1, missed: 1, rtts: 3, outlasted: 1}},
		{"a critical one silent past max_duration is removed while it lasts",
			with(with(allPassing(ids("o", 4)), ids("f", 6), silentFor(time.Second, 0)), []string{"gone"}, func() instanceState {
				st := critical(time.Minute)
				st.SilentSince = st.CriticalSince
				return st
			}()),
			append(append(each(ids("f", 6), miss), miss("gone")), each(ids("o", 4), ok)...),
			want{preserve: "6 of 10 live instances failing", removals: []string{"gone"}, sent: 1, missed: 1, rtts: 4}},
		{"never steady: silent within steady_after of their registration, they count toward nothing and are judged",
			with(allPassing(ids("o", 4)), ids("y", 10), func() instanceState { st := young(6 * time.Second); st.Judge.Failures = 2; return st }()),
			append(each(ids("y", 10), miss), each(ids("o", 4), ok)...),
			want{transitions: []string{"y0:critical", "y1:critical", "y2:critical", "y3:critical", "y4:critical", "y5:critical", "y6:critical", "y7:critical", "y8:critical", "y9:critical"}, sent: 14, missed: 10, rtts: 4}},
		{"steady once up for steady_after: they count",
			with(allPassing(ids("o", 4)), ids("y", 6), young(time.Minute)), append(each(ids("y", 6), miss), each(ids("o", 4), ok)...),
			want{preserve: "6 of 10 live instances failing", rtts: 4}},
		{"a young one silent while steady ones make the node preserve is held too",
			with(with(allPassing(ids("o", 4)), ids("f", 6), silentFor(0, 0)), []string{"y"}, young(time.Second)),
			append(append(each(ids("f", 6), miss), miss("y")), each(ids("o", 4), ok)...),
			want{preserve: "6 of 10 live instances failing", rtts: 4}},
		{"critical instances do not count as live",
			map[string]instanceState{"c0": critical(time.Second), "c1": critical(time.Second), "c2": critical(time.Second),
				"c3": critical(time.Second), "c4": critical(time.Second), "a": passing},
			append(each([]string{"c0", "c1", "c2", "c3", "c4"}, miss), ok("a")),
			want{sent: 6, missed: 5, rtts: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := decideRound(roundInput{Results: tt.results, Owned: tt.owned, Timing: timing, Start: t0})
			if (tt.want.preserve == "") != (d.Preserve == "") || !strings.Contains(d.Preserve, tt.want.preserve) {
				t.Errorf("preserve %q, want %q", d.Preserve, tt.want.preserve)
			}
			var got []string
			for _, tr := range d.Transitions {
				label := tr.ID + ":" + string(tr.Next.Judge.Status)
				if tr.ChecksChanged {
					label += "+checks"
				}
				if !tr.StatusChanged {
					label = tr.ID + ":checks"
				}
				got = append(got, label)
				if tr.Why == "" {
					t.Errorf("transition of %s without a reason", tr.ID)
				}
			}
			if !slices.Equal(got, tt.want.transitions) {
				t.Errorf("transitions %v, want %v", got, tt.want.transitions)
			}
			var removed []string
			for _, r := range d.Removals {
				removed = append(removed, r.ID)
			}
			if !slices.Equal(removed, tt.want.removals) {
				t.Errorf("removals %v, want %v", removed, tt.want.removals)
			}
			if d.Sent != tt.want.sent || d.Missed != tt.want.missed || d.BadReplies != tt.want.badReplies || d.Void != tt.want.void || len(d.RTTs) != tt.want.rtts {
				t.Errorf("counts sent %d missed %d bad %d void %d rtts %d, want %+v", d.Sent, d.Missed, d.BadReplies, d.Void, len(d.RTTs), tt.want)
			}
			if d.Outlasted != tt.want.outlasted {
				t.Errorf("outlasted %d, want %d", d.Outlasted, tt.want.outlasted)
			}
			byID := map[string]heartbeat.Result{}
			for _, r := range tt.results {
				byID[r.ID] = r
			}
			next := maps.Clone(d.Judged)
			for _, tr := range d.Transitions {
				next[tr.ID] = tr.Next
			}
			for id, st := range next {
				r, prior := byID[id], tt.owned[id]
				want := prior.SilentSince
				switch {
				case r.Err == nil:
					want = time.Time{}
				case want.IsZero():
					want = t0
				}
				if !st.SilentSince.Equal(want) {
					t.Errorf("%s silent since %v, want %v", id, st.SilentSince, want)
				}
				if d.Preserve != "" && prior.SilentSince.Add(timing.SelfPreservation.MaxDuration).After(t0) && st.Judge != prior.Judge {
					t.Errorf("a preserved round judged %s, held", id)
				}
			}
			for _, tr := range d.Transitions {
				if _, also := d.Judged[tr.ID]; also {
					t.Errorf("%s both judged unchanged and changed", tr.ID)
				}
			}
		})
	}
}

func TestMembers(t *testing.T) {
	const self, a, b = "n-self", "n-a", "n-b"
	m := newMembers(self)
	steps := []struct {
		name         string
		do           func() ([]string, []string)
		joined, left []string
		size         int
	}{
		{"a joins", func() ([]string, []string) { return m.apply(a, true) }, []string{a}, nil, 2},
		{"a again changes nothing", func() ([]string, []string) { return m.apply(a, true) }, nil, nil, 2},
		{"its own entry going changes nothing", func() ([]string, []string) { return m.apply(self, false) }, nil, nil, 2},
		{"a replay without a, with b", func() ([]string, []string) { return m.replace(map[string]bool{b: true}) }, []string{b}, []string{a}, 2},
		{"b leaves", func() ([]string, []string) { return m.apply(b, false) }, nil, []string{b}, 1},
	}
	for _, s := range steps {
		joined, left := s.do()
		if !slices.Equal(joined, s.joined) || !slices.Equal(left, s.left) || m.len() != s.size {
			t.Fatalf("%s: joined %v left %v size %d; want %v %v %d", s.name, joined, left, m.len(), s.joined, s.left, s.size)
		}
	}
	if !m.owns("any-instance") {
		t.Error("a node alone does not own every instance")
	}
}
