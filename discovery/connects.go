package discovery

import (
	"slices"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/hailsd/hail/events"
)

// PROTOCOL v1.6: with identities, an instance's connection is what the
// server says, not what the instance announced. The server's CONNECT
// advisory names the identity (client.user = <S>.<id>) as its DISCONNECT
// does, so discovery keeps, per identity, the connections the servers
// said opened and have not said closed. An identity's DISCONNECT then
// marks its instance critical only when it leaves the identity no live
// connection: the late DISCONNECT of an old connection, arriving after
// the instance reconnected on a new one, marks nothing, whatever the
// record says of its conn (and whether it says anything).
//
// A client holds one connection at a time to one server, so a connection
// on another server than the identity's others means those have gone (it
// reconnected elsewhere) or are going: they are forgotten then. This also
// keeps a server that crashed, whose clients' DISCONNECTs never come,
// from leaving its identities looking connected for ever. Two connections
// of one identity at once (the old one of a reconnect not closed yet, or
// a second one on purpose) are kept while they are on one server.
//
// A server that crashes sends no DISCONNECT for its clients, and only the
// node that was connected to it sees it go (serverloss.go); a dead
// identity on it would be held as connected for ever. So an identity's
// connections are forgotten when its instance's record has been gone for
// deregister_after and has not come back (a dead instance's record goes
// deregister_after its silence): not at once, as an instance still
// connected when its record goes (an operator deregistered it, or it was
// judged dead while hung) announces again on the same connection, and its
// DISCONNECT should still be read by what the servers said.
//
// An identity discovery never heard connect (it connected before the node
// started, or its CONNECT was dropped beyond the bound, or what was held
// of it was forgotten) is judged as before: its DISCONNECT marks its
// instance unless the record names another connection (PROTOCOL v1.4).

// maxLiveConns bounds the connections held, all identities together: a
// region's identities (50,000 measured) and their reconnects, with room.
// Beyond it a CONNECT is dropped, counted, and its identity forgotten (its
// knowledge would be short of a connection), so it is judged as one never
// heard.
const maxLiveConns = 1 << 17

// maxConnsPerIdentity bounds one identity's share: an instance holds one
// connection, two while it reconnects. One that opens more is forgotten
// and judged as one never heard.
const maxConnsPerIdentity = 16

// connVerdict is what an identity's DISCONNECT means for its instance.
type connVerdict int

const (
	// connUnheard: discovery holds no live connection of the identity
	// (it never heard it connect): the record's conn decides.
	connUnheard connVerdict = iota
	// connStillLive: the identity has another live connection; its
	// instance is not marked.
	connStillLive
	// connLast: the identity's last live connection closed; its instance
	// is marked, whatever its record says of its conn.
	connLast
)

// liveConns is, per identity (its instance key, <S>.<id>), the
// connections the servers said opened and have not said closed. The
// advisories' reader writes it; a heartbeat round reads the server an
// identity is on.
type liveConns struct {
	mu    sync.Mutex
	byKey map[string]*identityConns
	// gone is when the record of each identity held went (recordGone),
	// until sweep: at most one entry per identity held.
	gone  map[string]time.Time
	total int // connections held
	max   int // maxLiveConns, or a test's

	connected, dropped, forgotten *metrics.Counter
}

// identityConns are one identity's live connections: all on one server.
type identityConns struct {
	server  string
	clients []uint64
}

func newLiveConns(set *metrics.Set, max int) *liveConns {
	l := &liveConns{byKey: map[string]*identityConns{}, gone: map[string]time.Time{}, max: max,
		// connected: an identity's CONNECT taken in; dropped: beyond the
		// bound (its identity forgotten).
		connected: set.GetOrCreateCounter(`hail_discovery_identity_connects_total{outcome="connected"}`),
		dropped:   set.GetOrCreateCounter(`hail_discovery_identity_connects_total{outcome="dropped"}`),
		forgotten: set.GetOrCreateCounter("hail_discovery_identity_connections_forgotten_total"),
	}
	set.GetOrCreateGauge("hail_discovery_identity_connections", func() float64 {
		l.mu.Lock()
		defer l.mu.Unlock()
		return float64(l.total)
	})
	return l
}

// connect takes in identity key's CONNECT of conn.
func (l *liveConns) connect(key string, conn events.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.byKey[key]
	if e != nil && e.server != conn.Server {
		// It moved to another server: what it held on the old one is
		// gone or going.
		l.total -= len(e.clients)
		e.server, e.clients = conn.Server, e.clients[:0]
	}
	if e != nil && slices.Contains(e.clients, conn.Client) {
		return
	}
	if l.total >= l.max || (e != nil && len(e.clients) >= maxConnsPerIdentity) {
		l.dropped.Inc()
		l.forget(key)
		return
	}
	if e == nil {
		e = &identityConns{server: conn.Server}
		l.byKey[key] = e
	}
	e.clients = append(e.clients, conn.Client)
	l.total++
	l.connected.Inc()
}

// disconnect takes in identity key's DISCONNECT of conn, and says what it
// means for its instance.
func (l *liveConns) disconnect(key string, conn events.Conn) connVerdict {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.byKey[key]
	if e == nil {
		return connUnheard
	}
	if e.server == conn.Server {
		if i := slices.Index(e.clients, conn.Client); i >= 0 {
			e.clients = slices.Delete(e.clients, i, i+1)
			l.total--
		}
	}
	if len(e.clients) > 0 {
		return connStillLive
	}
	delete(l.byKey, key)
	delete(l.gone, key)
	return connLast
}

// forget drops what is held of identity key; l.mu is held.
func (l *liveConns) forget(key string) {
	if e := l.byKey[key]; e != nil {
		l.total -= len(e.clients)
		delete(l.byKey, key)
	}
	delete(l.gone, key)
}

// recordGone notes that identity key's instance record went at now.
func (l *liveConns) recordGone(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byKey[key] != nil {
		l.gone[key] = now
	}
}

// sweep forgets the identities whose record went after or longer before
// now and has no record again (hasRecord, called without l.mu held), and
// returns how many connections it forgot. An identity whose record came
// back is kept.
func (l *liveConns) sweep(now time.Time, after time.Duration, hasRecord func(key string) bool) int {
	type mark struct {
		at   time.Time
		back bool
	}
	l.mu.Lock()
	if len(l.gone) == 0 { // as in nearly every round: nothing to look at
		l.mu.Unlock()
		return 0
	}
	due := map[string]mark{}
	for key, at := range l.gone {
		if now.Sub(at) >= after {
			due[key] = mark{at: at}
		}
	}
	l.mu.Unlock()
	if len(due) == 0 {
		return 0
	}
	for key, m := range due {
		m.back = hasRecord(key)
		due[key] = m
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for key, m := range due {
		if at, ok := l.gone[key]; !ok || !at.Equal(m.at) {
			continue // forgotten, or gone again, meanwhile
		}
		if m.back {
			delete(l.gone, key)
			continue
		}
		if e := l.byKey[key]; e != nil {
			n += len(e.clients)
		}
		l.forget(key)
	}
	l.forgotten.Add(n)
	return n
}

// servers runs f with a lookup of the server each identity's live
// connections are on ("" for none), under one lock for a whole round; the
// lookup is nil when no identity is held, so that a region without
// identities pays nothing for it per instance.
func (l *liveConns) servers(f func(on func(key string) string)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.byKey) == 0 {
		f(nil)
		return
	}
	f(func(key string) string {
		if e := l.byKey[key]; e != nil {
			return e.server
		}
		return ""
	})
}
