package discovery

import (
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/hailsd/hail/events"
)

// What an identity's live connections say of each of its DISCONNECTs:
// every step of a run of advisories, the verdict after each disconnect,
// and what is held at the end.
func TestLiveConns(t *testing.T) {
	type step struct {
		connect bool // else a disconnect
		key     string
		server  string
		client  uint64
		want    connVerdict // of a disconnect
	}
	on := func(key, server string, client uint64) step {
		return step{connect: true, key: key, server: server, client: client}
	}
	off := func(key, server string, client uint64, want connVerdict) step {
		return step{key: key, server: server, client: client, want: want}
	}
	const a, b = "echo.a", "echo.b"
	tests := []struct {
		name    string
		max     int
		steps   []step
		held    int    // connections held at the end
		server  string // a's server at the end
		dropped uint64
	}{
		{"connect then disconnect", 8, []step{on(a, "N1", 1), off(a, "N1", 1, connLast)}, 0, "", 0},
		{"unknown identity", 8, []step{off(a, "N1", 1, connUnheard)}, 0, "", 0},
		{"another identity's connection is not its own", 8, []step{on(b, "N1", 1), off(a, "N1", 1, connUnheard)}, 1, "", 0},
		{"the older of two closes first", 8, []step{on(a, "N1", 1), on(a, "N1", 2), off(a, "N1", 1, connStillLive), off(a, "N1", 2, connLast)}, 0, "", 0},
		{"the newer of two closes first", 8, []step{on(a, "N1", 1), on(a, "N1", 2), off(a, "N1", 2, connStillLive), off(a, "N1", 1, connLast)}, 0, "", 0},
		{"a connection twice is one", 8, []step{on(a, "N1", 1), on(a, "N1", 1), off(a, "N1", 1, connLast)}, 0, "", 0},
		{"a DISCONNECT twice: the second unheard", 8, []step{on(a, "N1", 1), off(a, "N1", 1, connLast), off(a, "N1", 1, connUnheard)}, 0, "", 0},
		{"a connection never heard closes while a heard one lives", 8, []step{on(a, "N1", 2), off(a, "N1", 1, connStillLive)}, 1, "N1", 0},
		// A reconnect to another server: the old server's connections
		// are gone or going, and a late DISCONNECT of one marks nothing.
		{"moved to another server", 8, []step{on(a, "N1", 1), on(a, "N2", 5), off(a, "N1", 1, connStillLive)}, 1, "N2", 0},
		{"moved, then the new one closes", 8, []step{on(a, "N1", 1), on(a, "N2", 5), off(a, "N2", 5, connLast)}, 0, "", 0},
		{"a crashed server's connection is not kept", 8, []step{on(a, "N1", 1), on(a, "N1", 2), on(a, "N2", 5), off(a, "N2", 5, connLast)}, 0, "", 0},
		// Beyond the bound a CONNECT is dropped and its identity
		// forgotten: judged as one never heard.
		{"bound: a new identity dropped", 2, []step{on(a, "N1", 1), on(b, "N1", 2), on("echo.c", "N1", 3), off("echo.c", "N1", 3, connUnheard)}, 2, "N1", 1},
		{"bound: a known identity forgotten", 2, []step{on(a, "N1", 1), on(b, "N1", 2), on(a, "N1", 3), off(a, "N1", 1, connUnheard), off(b, "N1", 2, connLast)}, 0, "", 1},
		{"bound: room again once one closes", 2, []step{on(a, "N1", 1), on(b, "N1", 2), off(b, "N1", 2, connLast), on(a, "N1", 3), off(a, "N1", 1, connStillLive)}, 1, "N1", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLiveConns(metrics.NewSet(), tt.max)
			for i, s := range tt.steps {
				conn := events.Conn{Server: s.server, Client: s.client}
				if s.connect {
					l.connect(s.key, conn)
					continue
				}
				if got := l.disconnect(s.key, conn); got != s.want {
					t.Errorf("step %d, %s closes %v: %v, want %v", i, s.key, conn, got, s.want)
				}
			}
			if got := l.len(); got != tt.held {
				t.Errorf("%d held, want %d", got, tt.held)
			}
			var got string
			l.servers(func(on func(string) string) {
				if on != nil {
					got = on(a)
				}
			})
			if got != tt.server {
				t.Errorf("%s on %q, want %q", a, got, tt.server)
			}
			if got := l.dropped.Get(); got != tt.dropped {
				t.Errorf("%d dropped, want %d", got, tt.dropped)
			}
		})
	}
	t.Run("one identity's share", func(t *testing.T) {
		l := newLiveConns(metrics.NewSet(), maxLiveConns)
		for i := range maxConnsPerIdentity + 1 {
			l.connect(a, events.Conn{Server: "N1", Client: uint64(i + 1)})
		}
		if got := l.disconnect(a, events.Conn{Server: "N1", Client: 1}); got != connUnheard {
			t.Errorf("%v, want %v: an identity past its share is forgotten", got, connUnheard)
		}
		if l.len() != 0 || l.dropped.Get() != 1 {
			t.Errorf("%d held, %d dropped; want 0, 1", l.len(), l.dropped.Get())
		}
	})
}

// What is held of an identity is forgotten once its record has been
// gone for the time given and has not come back; an identity whose
// record comes back, or that was not held, or that goes again, is kept
// until then; one forgotten is judged as one never heard.
func TestLiveConnsForgotten(t *testing.T) {
	const a, b, c, d = "echo.a", "echo.b", "echo.c", "echo.d"
	const after = time.Minute
	t0 := time.Unix(1_700_000_000, 0)
	l := newLiveConns(metrics.NewSet(), maxLiveConns)
	l.connect(a, events.Conn{Server: "N1", Client: 1})
	l.connect(a, events.Conn{Server: "N1", Client: 2})
	l.connect(b, events.Conn{Server: "N1", Client: 3})
	l.connect(c, events.Conn{Server: "N2", Client: 4})
	l.recordGone(a, t0)
	l.recordGone(b, t0)              // comes back
	l.recordGone(c, t0.Add(after/2)) // not yet due
	l.recordGone(d, t0)              // not held: nothing to forget
	records := map[string]bool{b: true}
	hasRecord := func(key string) bool { return records[key] }

	if n := l.sweep(t0.Add(after-time.Second), after, hasRecord); n != 0 {
		t.Errorf("forgot %d before any was due", n)
	}
	if n := l.sweep(t0.Add(after), after, hasRecord); n != 2 {
		t.Errorf("forgot %d connections, want a's 2", n)
	}
	if got := l.disconnect(a, events.Conn{Server: "N1", Client: 1}); got != connUnheard {
		t.Errorf("a, gone for good: %v, want %v", got, connUnheard)
	}
	// b's record came back: kept, and its mark is done with.
	delete(records, b)
	if n := l.sweep(t0.Add(3*after), after, hasRecord); n != 1 {
		t.Errorf("forgot %d later, want c's 1 (b came back before its sweep)", n)
	}
	if got := l.disconnect(b, events.Conn{Server: "N1", Client: 3}); got != connLast {
		t.Errorf("b, whose record came back: %v, want %v", got, connLast)
	}
	if got := l.disconnect(c, events.Conn{Server: "N2", Client: 4}); got != connUnheard {
		t.Errorf("c, gone for good: %v, want %v", got, connUnheard)
	}
	if l.len() != 0 || l.forgotten.Get() != 3 || len(l.gone) != 0 {
		t.Errorf("%d held, %d forgotten, %d marks; want 0, 3, 0", l.len(), l.forgotten.Get(), len(l.gone))
	}
}

// String names a verdict in the test's messages.
func (v connVerdict) String() string {
	return [...]string{"unheard", "still live", "last"}[v]
}

// len is the connections l holds.
func (l *liveConns) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}
