package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
)

// PROTOCOL v1.4: the server says the moment a client's connection closes
// ($SYS.ACCOUNT.<account>.DISCONNECT, imported into hail's account), and
// the owner of every instance whose record names that connection marks it
// critical at once, instead of waiting for three missed heartbeats.
// Heartbeats stay, for hangs and partitions.
//
// Advisories are read off the loop: one reader takes the CONNECT and
// DISCONNECT advisories in the order the server sent them (an identity's
// live connections, connects.go, are right only so), decodes each, and
// adds a DISCONNECT to a bounded set of pending connections (a flood of
// clients reconnecting in a loop coalesces there, and beyond the bound is
// dropped and counted); one goroutine hands the set to the loop as a
// single job, ahead of announces, waiting for it before it hands the next.
// A job looks each connection up in the owned set's index and writes every
// instance it finds critical in one batch.

// maxPendingDisconnects bounds the connections waiting for the loop.
const maxPendingDisconnects = 16384

// advisoryBuffer bounds the advisories waiting for the reader: a region's
// identities reconnecting at once, each a CONNECT, with room. Beyond it
// nats.go drops them (a slow consumer).
const advisoryBuffer = 1 << 16

// probeTimeout is how long discovery waits for the advisory of the
// connection it opens and closes at start to see whether the server
// sends them.
const probeTimeout = 5 * time.Second

// disconnects is the pending advisories and what is counted of them.
type disconnects struct {
	mu      sync.Mutex
	pending map[events.Conn]string // reason by connection
	// who is the identity a pending connection was, when the advisory
	// names one (PROTOCOL v1.6).
	who  map[events.Conn]closedIdentity
	wake chan struct{}
	// live is every identity's live connections, as the advisories say
	// (connects.go); the reader alone writes it.
	live *liveConns
	// probe, while set, is the connection whose advisory start waits for.
	probe *events.Conn
	heard chan struct{}
	// opts are the node's connection's options, copied when the node is
	// made (nats.go writes them while a handler is set): the probe's.
	opts nats.Options
	// sent: 1 once the probe's advisory came, 0 when it did not.
	sent atomic.Int64
	// connects counts the CONNECT advisories read, any user's: above 0
	// when the probe's DISCONNECT is heard if the server sends them (the
	// probe's own CONNECT came before it, on the same reader).
	// connectsSent is 1 unless the probe found none.
	connects     atomic.Int64
	connectsSent atomic.Int64

	marked, unknown, ignored, invalid, dropped, stillConnected, invalidConnects *metrics.Counter
}

// closedIdentity is the identity a closed connection was (its instance
// key, <S>.<id>), and whether discovery heard it connect: then its live
// connections, not its record's conn, said this was its last.
type closedIdentity struct {
	key   string
	heard bool
}

func newDisconnects(set *metrics.Set, opts nats.Options, live *liveConns) *disconnects {
	c := func(outcome string) *metrics.Counter {
		return set.GetOrCreateCounter(fmt.Sprintf(`hail_discovery_disconnects_total{outcome=%q}`, outcome))
	}
	d := &disconnects{
		pending: map[events.Conn]string{}, who: map[events.Conn]closedIdentity{}, wake: make(chan struct{}, 1), heard: make(chan struct{}, 1), opts: opts, live: live,
		// marked: a connection whose owned instances were marked;
		// unknown: no owned record names it; ignored: a server going
		// away (its clients reconnect elsewhere); invalid: not an
		// advisory; dropped: beyond maxPendingDisconnects;
		// still_connected: an identity's, which has another live
		// connection (v1.6).
		marked: c("marked"), unknown: c("unknown"), ignored: c("ignored"), invalid: c("invalid"), dropped: c("dropped"), stillConnected: c("still_connected"),
		invalidConnects: set.GetOrCreateCounter(`hail_discovery_identity_connects_total{outcome="invalid"}`),
	}
	// 1 until the probe at start finds the server sends none.
	d.sent.Store(1)
	d.connectsSent.Store(1)
	set.GetOrCreateGauge("hail_discovery_disconnect_advisories", func() float64 { return float64(d.sent.Load()) })
	set.GetOrCreateGauge("hail_discovery_connect_advisories", func() float64 { return float64(d.connectsSent.Load()) })
	return d
}

// hear takes in one DISCONNECT advisory; the reader's, in the order the
// advisories came.
func (d *disconnects) hear(log *slog.Logger) nats.MsgHandler {
	return func(m *nats.Msg) {
		ev, err := events.DecodeDisconnect(m.Data)
		if err != nil {
			d.invalid.Inc()
			log.Debug("ignoring a disconnect advisory", "subject", truncate(m.Subject), "err", err)
			return
		}
		key := identityOf(ev.User)
		verdict := connUnheard
		if key != "" {
			// Every reason closes the connection, a server's shutdown
			// too: it leaves the live set whatever is done of it.
			verdict = d.live.disconnect(key, ev.Conn)
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.probe != nil && *d.probe == ev.Conn {
			d.probe = nil
			d.heard <- struct{}{}
			return
		}
		if ev.Reason == events.ReasonServerShutdown {
			d.ignored.Inc()
			return
		}
		if verdict == connStillLive {
			d.stillConnected.Inc()
			return
		}
		if _, ok := d.pending[ev.Conn]; !ok && len(d.pending) >= maxPendingDisconnects {
			d.dropped.Inc()
			return
		}
		d.pending[ev.Conn] = ev.Reason
		if key != "" {
			d.who[ev.Conn] = closedIdentity{key: key, heard: verdict == connLast}
		} else {
			delete(d.who, ev.Conn)
		}
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// hearConnect takes in one CONNECT advisory: an identity's adds to its
// live connections (PROTOCOL v1.6); any other user's is of no use.
func (d *disconnects) hearConnect(log *slog.Logger) nats.MsgHandler {
	return func(m *nats.Msg) {
		ev, err := events.DecodeConnect(m.Data)
		if err != nil {
			d.invalidConnects.Inc()
			log.Debug("ignoring a connect advisory", "subject", truncate(m.Subject), "err", err)
			return
		}
		d.connects.Add(1)
		if key := identityOf(ev.User); key != "" {
			d.live.connect(key, ev.Conn)
		}
	}
}

// read takes the advisories of both subscriptions, in the order they
// came, until ctx ends: a DISCONNECT taken before its own connection's
// CONNECT would leave that connection live for ever.
func (d *disconnects) read(ctx context.Context, msgs <-chan *nats.Msg, connects *nats.Subscription, log *slog.Logger) {
	hear, hearConnect := d.hear(log), d.hearConnect(log)
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-msgs:
			if m.Sub == connects {
				hearConnect(m)
			} else {
				hear(m)
			}
		}
	}
}

// takeAll returns the pending advisories, and the identities of those
// that name one, and forgets them.
func (d *disconnects) takeAll() (pending map[events.Conn]string, who map[events.Conn]closedIdentity) {
	d.mu.Lock()
	defer d.mu.Unlock()
	pending, who = d.pending, d.who
	d.pending, d.who = make(map[events.Conn]string, len(pending)), map[events.Conn]closedIdentity{}
	return pending, who
}

// advisorySubs are the subscriptions of the connect and disconnect
// advisories, delivering on one channel.
type advisorySubs struct {
	msgs                  chan *nats.Msg
	disconnects, connects *nats.Subscription
}

// subscribeAdvisories subscribes the advisories; Run does it before the
// node serves, so that an identity that connects once it serves is heard.
func (n *Node) subscribeAdvisories() (*advisorySubs, error) {
	// One channel for both subscriptions: nats.go's reader puts each
	// message on it as it comes off the connection, so the order between
	// a connection's CONNECT and DISCONNECT holds (two callbacks would
	// each run on a goroutine of its own).
	a := &advisorySubs{msgs: make(chan *nats.Msg, advisoryBuffer)}
	var err error
	if a.disconnects, err = n.nc.ChanSubscribe(events.DisconnectAll, a.msgs); err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", events.DisconnectAll, err)
	}
	if a.connects, err = n.nc.ChanSubscribe(events.ConnectAll, a.msgs); err != nil {
		_ = a.disconnects.Unsubscribe()
		return nil, fmt.Errorf("subscribe %s: %w", events.ConnectAll, err)
	}
	// The probe's advisory, and the first identities' CONNECTs, come
	// only once the server has the subscriptions.
	if err := n.nc.Flush(); err != nil {
		n.log.Warn("flush the advisories' subscriptions", "err", err)
	}
	return a, nil
}

// watchDisconnects reads the advisories of a and hands the disconnects
// to the loop until ctx ends.
func (n *Node) watchDisconnects(ctx context.Context, a *advisorySubs) error {
	d := n.disconnects
	defer func() { _ = a.disconnects.Unsubscribe(); _ = a.connects.Unsubscribe() }()
	var workers sync.WaitGroup
	defer workers.Wait()
	workers.Go(func() { d.read(ctx, a.msgs, a.connects, n.log) })
	workers.Go(func() { n.disconnects.probeAdvisories(ctx, n.nc.Servers(), n.log) })
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.wake:
		}
		batch, who := d.takeAll()
		if len(batch) == 0 {
			continue
		}
		done := make(chan struct{})
		n.submitUrgent(ctx, func(ctx context.Context) {
			defer close(done)
			n.markDisconnected(ctx, batch, who)
		})
		select {
		case <-done:
		case <-ctx.Done():
			return nil
		}
	}
}

// markDisconnected marks critical, in one batch of writes, every owned
// instance a connection of batch was: an identity's own (who, v1.6),
// else every one whose record names the connection; runs on the loop.
func (n *Node) markDisconnected(ctx context.Context, batch map[events.Conn]string, who map[events.Conn]closedIdentity) {
	var ts []*tracked
	var reasons []string
	for conn, reason := range batch {
		on := n.owned.instancesOn(conn, who[conn])
		if len(on) == 0 {
			n.disconnects.unknown.Inc()
			continue
		}
		n.disconnects.marked.Inc()
		for _, t := range on {
			if !n.owned.holds(t) || t.rec.Status == events.Critical {
				continue
			}
			ts = append(ts, t)
			reasons = append(reasons, events.DisconnectReason(reason))
		}
	}
	if len(ts) == 0 {
		return
	}
	prevs := make([]events.Status, len(ts))
	for i, t := range ts {
		prevs[i] = t.rec.Status
	}
	errs := n.records.updateAll(ctx, ts, func(int) func(*events.InstanceRecord) {
		return func(r *events.InstanceRecord) { r.Status = events.Critical; n.records.setOwner(r) }
	})
	now := time.Now()
	for i, t := range ts {
		if errs[i] != nil {
			// Its heartbeats still judge it.
			n.log.Error("record disconnected instance critical", "service", t.rec.Service, "instance_id", t.rec.ID, "err", errs[i])
			continue
		}
		// Critical as if its heartbeats had failed: an answered one
		// (after it announces its new connection) makes it passing
		// again by the judge's usual rule, and its silence from now on
		// removes it after deregister_after.
		n.owned.disconnected(t, now)
		n.m.transitions(events.Critical).Inc()
		n.pub.health(t.rec, prevs[i], reasons[i])
		n.log.Info("instance health changed", "service", t.rec.Service, "instance_id", t.rec.ID, "status", events.Critical, "previous", prevs[i], "reason", reasons[i])
	}
}

// probeAdvisories opens a second connection like the node's own (to
// servers), closes it, and waits for its advisory: a server that does not export them to
// hail's account (a user's own NATS without the import, or discovery not
// allowed to subscribe) is said once, with what to add, and the node runs
// on heartbeats alone.
func (d *disconnects) probeAdvisories(ctx context.Context, servers []string, log *slog.Logger) {
	err := d.openProbe(ctx, servers)
	switch {
	case ctx.Err() != nil:
	case err != nil:
		d.sent.Store(0)
		log.Warn("the NATS server sends no disconnect advisories to hail's account: a crashed instance is found by its heartbeats alone (seconds, not milliseconds). "+
			"Give the server a system account that exports $SYS.ACCOUNT.*.DISCONNECT (and $SYS.ACCOUNT.*.CONNECT, so that an identity's old connection closing late does not mark it, and $SYS.SERVER.*.SHUTDOWN and $SYS.SERVER.*.LAMEDUCK, so that a server's clients are not judged while they reconnect) to hail's account, import them there without renaming, allow discovery to subscribe them, "+
			"and deny every user of the account publish on $SYS.> (README: \"Your own NATS server\")", "err", err)
	case d.connects.Load() == 0:
		d.connectsSent.Store(0)
		log.Warn("the NATS server sends no connect advisories to hail's account: an identity's old connection that closes after it reconnected marks it critical until its next answered heartbeat. " +
			"Export $SYS.ACCOUNT.*.CONNECT from the system account to hail's account beside $SYS.ACCOUNT.*.DISCONNECT, import it there without renaming, and allow discovery to subscribe it (README: \"Your own NATS server\")")
	default:
		log.Debug("the NATS server sends connect and disconnect advisories")
	}
}

var errNoAdvisory = errors.New("no advisory for a connection that closed")

// openProbe opens and closes the probe connection and waits for its
// advisory.
func (d *disconnects) openProbe(ctx context.Context, servers []string) error {
	o := d.opts
	o.Name = "hail-discovery-probe"
	o.AllowReconnect, o.RetryOnFailedConnect = false, false
	o.ConnectedCB, o.ReconnectedCB, o.DisconnectedErrCB, o.DisconnectedCB, o.ClosedCB, o.AsyncErrorCB = nil, nil, nil, nil, nil, nil
	o.Servers = servers
	pc, err := o.Connect()
	if err != nil {
		return fmt.Errorf("open a probe connection: %w", err)
	}
	server := pc.ConnectedServerId()
	client, err := pc.GetClientID()
	if err != nil {
		pc.Close()
		return fmt.Errorf("probe connection: %w", err)
	}
	d.mu.Lock()
	d.probe = &events.Conn{Server: server, Client: client}
	d.mu.Unlock()
	pc.Close()
	t := time.NewTimer(probeTimeout)
	defer t.Stop()
	select {
	case <-d.heard:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		d.mu.Lock()
		d.probe = nil
		d.mu.Unlock()
		return fmt.Errorf("%w within %v", errNoAdvisory, probeTimeout)
	}
}
