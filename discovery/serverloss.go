package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
)

// PROTOCOL v1.4: a server going away marks nothing, and its clients are
// silent while they reconnect elsewhere (or to it, restarted, before its
// routes are back). Judged by heartbeats alone, a client slower than three
// intervals to come back would be critical though nothing of it failed;
// self-preservation does not help when the instances are younger than
// steady_after, or too few to make a share.
//
// So discovery learns which server went away: the server's own
// $SYS.SERVER.<id>.SHUTDOWN and .LAMEDUCK events, imported into hail's
// account beside the disconnect advisories, and the node's own connection
// moving off a server (it hears no event from a server that crashed, but
// its own connection to it breaks). An instance whose silence began on
// that server, as it went away, is not judged for serverLossGrace from the
// start of its silence: it answers, or re-announces its new conn and
// answers, meanwhile, or it is judged as usual after. Nothing else
// changes: a process that dies is critical at once by its DISCONNECT
// (its new server is up), a hang on a live server is judged by its
// heartbeats as before, and a hang that began as its server went away is
// found serverLossGrace later at most.

// serverLossGrace is how long the silence of an instance of a server that
// went away is not judged: a client's reconnect (nats.go's default wait is
// 2 s with jitter, hail's own backoff at most 2 s; twice that) and a
// restarted server's routes and JetStream coming back.
const serverLossGrace = 10 * time.Second

// lameDuckWindow is how long after a server's LAMEDUCK event its clients
// may be closed: nats-server's lame_duck_duration (2 m by default) and
// its grace period (10 s). The SHUTDOWN at its end shortens it.
const lameDuckWindow = 2*time.Minute + 10*time.Second

// lossWindow is when an instance that fell silent on a server that went
// away fell silent for that reason: From to To.
type lossWindow struct {
	From, To time.Time
}

// contains reports whether a silence that began at silent began in w.
func (w lossWindow) contains(silent time.Time) bool {
	return !silent.Before(w.From) && !silent.After(w.To)
}

// serverHeld reports whether the silence of an instance that began at
// silent on server, judged in a round that started at start, is held:
// server went away as it began, and it has lasted less than
// serverLossGrace.
func serverHeld(lost map[string]lossWindow, server string, silent, start time.Time) bool {
	if server == "" || silent.IsZero() {
		return false
	}
	w, ok := lost[server]
	return ok && w.contains(silent) && start.Sub(silent) < serverLossGrace
}

// serverLosses is what a node knows of servers going away. The advisories'
// callback and the rounds (on the loop) share it under its lock.
type serverLosses struct {
	mu   sync.Mutex
	lost map[string]lossWindow
	// own is the server the node's connection was on at the last round,
	// ownSeen when (connected: the node's connection's server now).
	own       string
	ownSeen   time.Time
	connected func() string
	log       *slog.Logger

	shutdown, lameDuck, ownMoved, invalid, held *metrics.Counter
}

func newServerLosses(set *metrics.Set, connected func() string, log *slog.Logger) *serverLosses {
	c := func(how string) *metrics.Counter {
		return set.GetOrCreateCounter(fmt.Sprintf(`hail_discovery_servers_lost_total{how=%q}`, how))
	}
	return &serverLosses{
		lost: map[string]lossWindow{}, connected: connected, log: log,
		// shutdown, lame_duck: the server's event; own_connection: the
		// node's connection moved off it; invalid: a subject naming no
		// server.
		shutdown: c("shutdown"), lameDuck: c("lame_duck"), ownMoved: c("own_connection"), invalid: c("invalid"),
		held: set.GetOrCreateCounter("hail_discovery_heartbeats_held_server_lost_total"),
	}
}

// serverOf parses $SYS.SERVER.<id>.SHUTDOWN or .LAMEDUCK: the server's id
// (events.Conn's rule) and which.
func serverOf(subject string) (id, kind string, ok bool) {
	rest, found := strings.CutPrefix(subject, "$SYS.SERVER.")
	if !found {
		return "", "", false
	}
	id, kind, found = strings.Cut(rest, ".")
	if !found || (kind != "SHUTDOWN" && kind != "LAMEDUCK") {
		return "", "", false
	}
	if c := (events.Conn{Server: id, Client: 1}); c.Validate() != nil {
		return "", "", false
	}
	return id, kind, true
}

// hear is the subscription's callback; slack is how long before an event
// an instance's silence may have begun for its cause (a round that was
// under way).
func (l *serverLosses) hear(slack func() time.Duration) nats.MsgHandler {
	return func(m *nats.Msg) {
		id, kind, ok := serverOf(m.Subject)
		if !ok {
			l.invalid.Inc()
			return
		}
		now := time.Now()
		w := lossWindow{From: now.Add(-slack()), To: now.Add(serverLossGrace)}
		if kind == "LAMEDUCK" {
			l.lameDuck.Inc()
			w.To = now.Add(lameDuckWindow)
		} else {
			l.shutdown.Inc()
		}
		l.mu.Lock()
		if old, ok := l.lost[id]; ok && old.To.After(now) && old.From.Before(w.From) {
			// A shutdown at the end of a lame duck: the window from the
			// lame duck on.
			w.From = old.From
		}
		l.lost[id] = w
		l.mu.Unlock()
		l.log.Info("a NATS server is going away: the silence of its clients is not judged while they reconnect", "server", id, "event", kind, "grace", serverLossGrace)
	}
}

// snapshot is the servers lost as of a round that started at start: the
// node's own connection, moved off the server it was on at the round
// before, counts as that server lost since then. Windows over are
// forgotten.
func (l *serverLosses) snapshot(start time.Time, slack time.Duration) map[string]lossWindow {
	now := l.connected()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now != "" {
		if l.own != "" && now != l.own {
			l.ownMoved.Inc()
			w := lossWindow{From: l.ownSeen.Add(-slack), To: start.Add(serverLossGrace)}
			if old, ok := l.lost[l.own]; ok {
				w.From = minTime(w.From, old.From)
			}
			l.lost[l.own] = w
			l.log.Info("the node's NATS connection moved to another server: the silence of the clients of the one it left is not judged while they reconnect", "server", l.own, "now", now, "grace", serverLossGrace)
		}
		l.own, l.ownSeen = now, start
	}
	for id, w := range l.lost {
		if start.Sub(w.To) > serverLossGrace {
			delete(l.lost, id)
		}
	}
	if len(l.lost) == 0 {
		return nil
	}
	out := make(map[string]lossWindow, len(l.lost))
	for id, w := range l.lost {
		out[id] = w
	}
	return out
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// watchServerLosses subscribes the servers' shutdown and lame duck events
// until ctx ends. A server that does not export them to hail's account
// sends none: nothing is held then, as before.
func (n *Node) watchServerLosses(ctx context.Context) error {
	l := n.rounds.losses
	slack := func() time.Duration { t := n.Timing().Heartbeat; return t.Interval + t.Timeout }
	var subs []*nats.Subscription
	defer func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}()
	for _, subject := range []string{events.ServerShutdownAll, events.ServerLameDuckAll} {
		s, err := n.nc.Subscribe(subject, l.hear(slack))
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", subject, err)
		}
		subs = append(subs, s)
	}
	<-ctx.Done()
	return nil
}
