package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/heartbeat"
	"github.com/hailsd/hail/registry"
	"github.com/hailsd/hail/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"golang.org/x/sync/errgroup"
)

// kvTimeout bounds one KV operation, so a stalled JetStream cannot stall the
// node's loop for longer than a few heartbeat rounds.
const kvTimeout = 2 * time.Second

// Node is one discovery node. All registry state it owns is touched only by
// its loop goroutine: NATS callbacks, the KV watch and the heartbeat tracker
// hand their work to the loop, so there are no locks around the state and
// the order of events is the order they are applied in.
type Node struct {
	cfg       Config
	id        string
	nc        *nats.Conn
	kv        *bus.Buckets
	log       *slog.Logger
	reg       *registry.Registry
	schemas   *schemas.Set
	m         *nodeMetrics
	startedAt time.Time

	work    chan func(context.Context)
	refresh chan struct{}
	ready   atomic.Bool
	serving chan struct{} // closed when the node first becomes ready
	targets atomic.Pointer[[]string]
	timing  atomic.Pointer[Timing]
	// rtts is the last answered heartbeat's RTT of each owned instance,
	// replaced after every round.
	rtts atomic.Pointer[map[string]time.Duration]

	// Loop-owned.
	owned     map[string]*tracked // by KV key
	byID      map[string]*tracked
	unclaimed []*tracked // adopted, not yet rewritten with this node as owner
	// members are the live discovery nodes (hail_nodes), this one always
	// among them; memberIDs is the same, sorted, for Owner.
	members   map[string]bool
	memberIDs []string
	// preserving is true while the node is in self-preservation.
	preserving bool
	tracker    *heartbeat.Tracker
}

// tracked is what the node knows of one instance it owns.
type tracked struct {
	rec           events.InstanceRecord
	rev           uint64 // KV revision rec was read or written at
	judge         heartbeat.State
	criticalSince time.Time
}

// New makes a node; Run starts it.
func New(nc *nats.Conn, kv *bus.Buckets, cfg Config) (*Node, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("discovery config: %w", err)
	}
	if cfg.NodeID == "" {
		cfg.NodeID = uuid.NewString()
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	set, err := schemas.Load()
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:     cfg,
		id:      cfg.NodeID,
		nc:      nc,
		kv:      kv,
		log:     cfg.Logger.With("component", "discovery", "node_id", cfg.NodeID),
		reg:     registry.New(),
		schemas: set,
		work:    make(chan func(context.Context), 1024),
		refresh: make(chan struct{}, 1),
		serving: make(chan struct{}),
		owned:   map[string]*tracked{},
		byID:    map[string]*tracked{},
		members: map[string]bool{cfg.NodeID: true},
	}
	n.memberIDs = []string{cfg.NodeID}
	t := cfg.Timing
	n.timing.Store(&t)
	n.m = newNodeMetrics(cfg.Metrics, n)
	empty := []string{}
	n.targets.Store(&empty)
	return n, nil
}

// ID is the node's id.
func (n *Node) ID() string { return n.id }

// RTTs are the heartbeat round-trip times of the instances the node owns
// that answered its last round, by id.
func (n *Node) RTTs() map[string]time.Duration {
	if m := n.rtts.Load(); m != nil {
		return *m
	}
	return nil
}

// recordRTTs keeps the RTTs of a round's answers; an instance that did
// not answer has none.
func (n *Node) recordRTTs(results []heartbeat.Result) {
	next := make(map[string]time.Duration, len(results))
	for _, r := range results {
		if r.Err == nil {
			next[r.ID] = r.RTT
		}
	}
	n.rtts.Store(&next)
}

func (n *Node) handleRTT(m *nats.Msg) {
	rtts := n.RTTs()
	rep := events.RTTReport{Node: n.id, RTTMS: make(map[string]float64, len(rtts))}
	for id, d := range rtts {
		rep.RTTMS[id] = float64(d.Microseconds()) / 1000
	}
	n.respondJSON(m, rep)
}

// Timing is the timing in force.
func (n *Node) Timing() Timing { return *n.timing.Load() }

// Reconfigure changes the node's timing while it runs: the next heartbeat
// round uses the new interval, timeout and thresholds. An invalid t is
// refused and the timing in force stays.
func (n *Node) Reconfigure(t Timing) error {
	if err := t.validate(); err != nil {
		return fmt.Errorf("reconfigure discovery node: %w", err)
	}
	if old := n.timing.Swap(&t); *old != t {
		n.log.Info("timing changed", "interval", t.HeartbeatInterval, "timeout", t.HeartbeatTimeout,
			"missed_to_critical", t.Thresholds.FailuresToCritical, "answered_to_passing", t.Thresholds.SuccessesToPassing,
			"deregister_after", t.DeregisterAfter)
	}
	return nil
}

func (n *Node) interval() time.Duration { return n.timing.Load().HeartbeatInterval }

// Ready reports whether the node is subscribed, serving, and registered in
// hail_nodes.
func (n *Node) Ready() bool { return n.ready.Load() }

// Serving is closed once the node is first ready.
func (n *Node) Serving() <-chan struct{} { return n.serving }

// Run serves until ctx ends, then leaves: it stops taking messages, removes
// its hail_nodes entry and returns. A node runs once; start a new one to
// serve again.
func (n *Node) Run(ctx context.Context) error {
	n.startedAt = time.Now().UTC()
	// The watch outlives the loop: it is stopped only after every goroutine
	// reading it has returned, so its closing always means trouble.
	watchCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWatch()
	nw, err := n.kv.Nodes.WatchAll(watchCtx)
	if err != nil {
		return fmt.Errorf("watch bucket %s: %w", bus.NodesBucket, err)
	}
	w, err := n.kv.Instances.WatchAll(watchCtx)
	if err != nil {
		return fmt.Errorf("watch bucket %s: %w", bus.InstancesBucket, err)
	}
	defer func() { _ = w.Stop() }()
	// The live nodes, then the records already in KV, are loaded before
	// any announce is taken, so a restarted node resumes heartbeating its
	// share instead of treating their announces as new registrations.
	if err := n.loadInitial(ctx, nw, w); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err
	}
	tr, err := heartbeat.NewTracker(n.nc, n.cfg.Subjects, n.id, func() time.Duration { return n.Timing().HeartbeatTimeout })
	if err != nil {
		return err
	}
	defer tr.Close()
	n.tracker = tr

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error { return n.loop(gctx) })
	g.Go(func() error { return n.refreshNodeRecord(gctx) })
	g.Go(func() error { return n.forwardWatch(gctx, w) })
	g.Go(func() error { return n.forwardNodes(gctx, nw) })
	g.Go(func() error {
		tr.Run(gctx, n.interval, n.targetIDs, func(start time.Time, rs []heartbeat.Result) {
			n.submit(gctx, func(ctx context.Context) { n.handleRound(ctx, start, rs) })
		})
		return nil
	})

	svc, err := n.subscribe(gctx)
	if err != nil {
		stopRun()
		return errors.Join(err, g.Wait())
	}
	if err := n.nc.Flush(); err != nil {
		n.log.Warn("flush subscriptions", "err", err)
	}
	// An entry in hail_nodes means "ready", so it is written only now.
	if err := n.putNodeRecord(gctx); err != nil {
		n.log.Warn("register node", "err", err)
	}
	n.ready.Store(true)
	close(n.serving)
	if err := n.nc.Publish(n.cfg.Subjects.Discover(), []byte("{}")); err != nil {
		n.log.Warn("publish discover", "err", err)
	}
	n.log.Info("discovery node serving", "instances", len(n.targetIDs()), "interval", n.interval())

	<-gctx.Done()
	n.ready.Store(false)
	if err := svc.Close(); err != nil {
		n.log.Warn("stop taking messages", "err", err)
	}
	err = g.Wait()
	leaveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), kvTimeout)
	defer cancel()
	if derr := n.kv.Nodes.Delete(leaveCtx, n.id); derr != nil && !errors.Is(derr, nats.ErrConnectionClosed) {
		n.log.Warn("remove node entry", "err", derr)
	}
	n.log.Info("discovery node stopped")
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}

func (n *Node) loadInitial(ctx context.Context, nw, w jetstream.KeyWatcher) error {
	for loaded := false; !loaded; {
		select {
		case e, ok := <-nw.Updates():
			if !ok {
				return fmt.Errorf("watch bucket %s closed while loading", bus.NodesBucket)
			}
			if e == nil {
				loaded = true
				break
			}
			n.applyNode(e)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	n.log.Info("live discovery nodes", "nodes", len(n.memberIDs))
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("watch bucket %s closed while loading", bus.InstancesBucket)
			}
			if e == nil {
				n.publishTargets()
				n.claim(ctx)
				return nil
			}
			n.applyWatch(ctx, e)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// forwardNodes hands membership changes to the loop. Every live node,
// this one included, refreshes its entry each interval, so a watch that
// delivers nothing for several intervals has stalled (its consumer sits on a
// server this node can no longer reach, which nats.go notices only after
// 10 s): the watch is made anew, and its initial values replace the
// membership.
func (n *Node) forwardNodes(ctx context.Context, nw jetstream.KeyWatcher) error {
	stallAfter := func() time.Duration { return 3 * n.interval() }
	quiet := time.NewTimer(stallAfter())
	defer quiet.Stop()
	defer func() { _ = nw.Stop() }()
	var replay map[string]bool // non-nil while a new watch replays the bucket
	for {
		select {
		case e, ok := <-nw.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("watch bucket %s closed", bus.NodesBucket)
			}
			quiet.Reset(stallAfter())
			switch {
			case replay != nil && e == nil:
				live := replay
				replay = nil
				n.submit(ctx, func(ctx context.Context) {
					if n.replaceMembers(live) {
						n.rebalance(ctx)
					}
				})
			case replay != nil:
				if e.Operation() == jetstream.KeyValuePut {
					replay[e.Key()] = true
				} else {
					delete(replay, e.Key())
				}
			case e != nil:
				n.submit(ctx, func(ctx context.Context) {
					if n.applyNode(e) {
						n.rebalance(ctx)
					}
				})
			}
		case <-quiet.C:
			// Even alone the node sees its own refreshes, so silence
			// means the watch (or the bucket) is stuck.
			quiet.Reset(stallAfter())
			// The watch lives as long as ctx, so no shorter context here
			// (the JetStream API bounds the call by its own timeout).
			fresh, err := n.kv.Nodes.WatchAll(ctx)
			if err != nil {
				n.log.Warn("renew stalled watch", "bucket", bus.NodesBucket, "err", err)
				continue
			}
			n.log.Warn("watch of live nodes stalled; renewed it", "bucket", bus.NodesBucket)
			_ = nw.Stop()
			nw, replay = fresh, map[string]bool{}
		case <-ctx.Done():
			return nil
		}
	}
}

// replaceMembers sets the live nodes to live (this node always among
// them) and reports whether that changed anything.
func (n *Node) replaceMembers(live map[string]bool) bool {
	next := maps.Clone(live)
	next[n.id] = true
	return n.setMembers(next)
}

// applyNode takes in a change to hail_nodes and reports whether the set of
// live nodes changed. This node counts as live whatever its entry says:
// it is running.
func (n *Node) applyNode(e jetstream.KeyValueEntry) bool {
	id := e.Key()
	live := e.Operation() == jetstream.KeyValuePut
	if id == n.id {
		if !live && n.ready.Load() {
			// Its entry lapsed (the bucket had no leader for longer
			// than the TTL, say): say at once that it is alive, so
			// peers that saw it go take it back within moments.
			n.refreshNow()
		}
		return false
	}
	next := maps.Clone(n.members)
	if live {
		next[id] = true
	} else {
		delete(next, id)
	}
	return n.setMembers(next)
}

// setMembers makes next the live nodes, saying who joined and left, and
// reports whether anything changed.
func (n *Node) setMembers(next map[string]bool) bool {
	if maps.Equal(next, n.members) {
		return false
	}
	for id := range n.members {
		if !next[id] {
			n.log.Info("discovery node left", "peer", id)
		}
	}
	for id := range next {
		if !n.members[id] {
			n.log.Info("discovery node joined", "peer", id)
		}
	}
	n.members = next
	n.memberIDs = slices.Sorted(maps.Keys(next))
	n.m.members.Store(int64(len(n.memberIDs)))
	return true
}

// owns reports whether this node owns the instance among the live nodes.
func (n *Node) owns(id string) bool { return events.Owner(n.memberIDs, id) == n.id }

// rebalance follows a change of the live nodes: the node takes over the
// records it now owns (keeping their status, so a healthy instance does not
// flap) and lets go of those another node now owns (that node claims
// them).
func (n *Node) rebalance(ctx context.Context) {
	var gained, lost int
	for _, t := range slices.Collect(maps.Values(n.owned)) {
		if !n.owns(t.rec.ID) {
			n.untrack(t)
			lost++
		}
	}
	n.reg.Each(func(rec events.InstanceRecord, rev uint64) {
		if n.owned[rec.Key()] == nil && n.owns(rec.ID) {
			n.adopt(rec, rev)
			gained++
		}
	})
	if gained > 0 || lost > 0 {
		n.log.Info("ownership rebalanced", "nodes", len(n.memberIDs), "gained", gained, "released", lost, "owned", len(n.owned))
		n.m.rebalances.Inc()
	}
	n.publishTargets()
	if gained > 0 && n.tracker != nil {
		// Instances taken over have gone a while without a heartbeat.
		n.tracker.Kick()
	}
	n.claim(ctx)
}

func (n *Node) forwardWatch(ctx context.Context, w jetstream.KeyWatcher) error {
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("watch bucket %s closed", bus.InstancesBucket)
			}
			if e != nil {
				n.submit(ctx, func(ctx context.Context) {
					n.applyWatch(ctx, e)
					n.claim(ctx)
				})
			}
		case <-ctx.Done():
			return nil
		}
	}
}

// submit hands f to the loop; it gives up when ctx ends.
func (n *Node) submit(ctx context.Context, f func(context.Context)) {
	select {
	case n.work <- f:
	case <-ctx.Done():
	}
}

func (n *Node) loop(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case f := <-n.work:
			f(ctx)
		}
	}
}

// refreshNow asks refreshNodeRecord for a refresh before its next tick.
func (n *Node) refreshNow() {
	select {
	case n.refresh <- struct{}{}:
	default:
	}
}

// refreshNodeRecord keeps the node's hail_nodes entry alive. It runs apart
// from the loop so that a stalled KV delays the entry, not the judging.
func (n *Node) refreshNodeRecord(ctx context.Context) error {
	every := n.interval()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if d := n.interval(); d != every {
			every = d
			t.Reset(every)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-n.refresh:
			if n.ready.Load() {
				if err := n.putNodeRecord(ctx); err != nil {
					n.log.Warn("refresh node entry", "err", err)
				}
			}
		case <-t.C:
			if n.ready.Load() {
				if err := n.putNodeRecord(ctx); err != nil {
					n.log.Warn("refresh node entry", "err", err)
				}
			}
		}
	}
}

// subscribe serves the node's subjects as the NATS micro service
// hail-discovery (queue group P.discovery), its id in the metadata.
func (n *Node) subscribe(ctx context.Context) (*bus.Service, error) {
	s := n.cfg.Subjects
	queue := s.DiscoveryQueue()
	return bus.AddService(n.nc, micro.Config{
		Name:        "hail-discovery",
		Version:     events.Version,
		Description: "hail discovery node: registrations, heartbeats, registry queries",
		Metadata:    map[string]string{"node_id": n.id, "az": n.cfg.AZ, "hostname": n.cfg.Hostname},
	}, []bus.Endpoint{
		{Name: "announce", Subject: s.AnnounceAll(), Queue: queue, Handler: func(m *nats.Msg) {
			n.submit(ctx, func(ctx context.Context) { n.handleAnnounce(ctx, m) })
		}},
		{Name: "deregister", Subject: s.DeregisterAll(), Queue: queue, Handler: func(m *nats.Msg) {
			n.submit(ctx, func(ctx context.Context) { n.handleDeregister(ctx, m) })
		}},
		{Name: "services", Subject: s.DiscoveryServices(), Queue: queue, Handler: n.handleServices},
		{Name: "instances", Subject: s.DiscoveryInstances(), Queue: queue, Handler: n.handleInstances},
		{Name: "rtt", Subject: s.DiscoveryRTT(), Handler: n.handleRTT},
	})
}

func (n *Node) putNodeRecord(ctx context.Context) error {
	data, err := json.Marshal(events.NodeRecord{
		ID: n.id, AZ: n.cfg.AZ, Hostname: n.cfg.Hostname, StartedAt: n.startedAt, TS: time.Now().UTC(),
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	if _, err := n.kv.Nodes.Put(ctx, n.id, data); err != nil {
		n.m.kvErrors.Inc()
		return fmt.Errorf("put %s %s: %w", bus.NodesBucket, n.id, err)
	}
	return nil
}

// targetIDs is the tracker's view of what to heartbeat: a snapshot the
// loop republishes whenever ownership changes.
func (n *Node) targetIDs() []string { return *n.targets.Load() }

func (n *Node) publishTargets() {
	ids := slices.Collect(maps.Keys(n.byID))
	n.targets.Store(&ids)
	n.m.owned.Store(int64(len(ids)))
}

func (n *Node) track(rec events.InstanceRecord, rev uint64) *tracked {
	t := &tracked{rec: rec, rev: rev, judge: heartbeat.State{Status: rec.Status}}
	if rec.Status == events.Critical {
		// The time it went critical is not stored; its last update is
		// the best the record tells.
		t.criticalSince = rec.UpdatedAt
	}
	n.owned[rec.Key()] = t
	n.byID[rec.ID] = t
	n.publishTargets()
	return t
}

func (n *Node) untrack(t *tracked) {
	delete(n.owned, t.rec.Key())
	if n.byID[t.rec.ID] == t {
		delete(n.byID, t.rec.ID)
	}
	n.publishTargets()
}

// applyWatch takes in a change to hail_instances seen through the watch:
// the echo of the node's own write (ignored by revision), or a change made
// by someone else (an operator's `nats kv put`, or the records found at
// start-up).
func (n *Node) applyWatch(ctx context.Context, e jetstream.KeyValueEntry) {
	key, rev := e.Key(), e.Revision()
	t := n.owned[key]
	if e.Operation() != jetstream.KeyValuePut {
		n.reg.Delete(key, rev)
		if t != nil && t.rev < rev {
			n.untrack(t)
		}
		return
	}
	if t != nil && t.rev >= rev {
		return
	}
	rec, err := events.DecodeInstanceRecord(e.Value())
	if err == nil && rec.Key() != key {
		err = fmt.Errorf("record for %s stored under key %s", rec.Key(), key)
	}
	if err != nil {
		n.m.rejected(reasonBadRecord).Inc()
		n.log.Warn("ignoring invalid registry record", "key", key, "revision", rev, "err", err)
		return
	}
	if t != nil {
		n.reg.Put(rec, rev)
		t.rec, t.rev = rec, rev
		if rec.Status != t.judge.Status {
			t.judge = heartbeat.State{Status: rec.Status}
		}
		return
	}
	if !n.reg.Put(rec, rev) || !n.owns(rec.ID) {
		return // older than what the node knows, or another node's
	}
	n.adopt(rec, rev)
}

// adopt takes over a record found in KV: from the watch (at start-up, all
// of them) or when an announce finds its key already there. A record
// another node wrote is claimed in the next batch.
func (n *Node) adopt(rec events.InstanceRecord, rev uint64) *tracked {
	n.reg.Put(rec, rev)
	t := n.track(rec, rev)
	if rec.Node != n.id {
		n.unclaimed = append(n.unclaimed, t)
	}
	return t
}

// setOwner is the mutation of a claim: the node writes itself as owner.
func (n *Node) setOwner(r *events.InstanceRecord) { r.Node = n.id }

// claim records this node as the owner of the records it adopted, all at
// once: after a restart that is every record in the bucket.
func (n *Node) claim(ctx context.Context) {
	if len(n.unclaimed) == 0 {
		return
	}
	ts := n.unclaimed
	n.unclaimed = nil
	jobs := make([]job, len(ts))
	for i, t := range ts {
		jobs[i] = job{t: t, mutate: n.setOwner}
	}
	for i, err := range n.updateAll(ctx, jobs) {
		if err != nil {
			n.log.Warn("claim adopted record", "key", ts[i].rec.Key(), "err", err)
		}
	}
}

// The reasons rejected input is counted under.
const (
	reasonTooLarge  = "too_large"
	reasonSubject   = "bad_subject"
	reasonMalformed = "malformed"
	reasonInvalid   = "invalid"
	reasonSchema    = "schema"
	reasonMismatch  = "service_mismatch"
	reasonBadQuery  = "bad_query"
	reasonKV        = "kv_error"
	reasonBadRecord = "bad_record"
	reasonBadReply  = "bad_reply"
	reasonIDTaken   = "id_taken"
)

// decodeControl runs every check PROTOCOL.md puts on an announce or
// deregister: size, subject, JSON, field rules, schema, and that the body's
// service is the subject's.
func (n *Node) decodeControl(m *nats.Msg, kind, schema string, parseSubject func(string) (string, error), v interface {
	events.Validator
	service() string
}) (string, error) {
	if err := events.CheckSize(kind, m.Data); err != nil {
		return reasonTooLarge, err
	}
	service, err := parseSubject(m.Subject)
	if err != nil {
		return reasonSubject, fmt.Errorf("%s: %w", kind, err)
	}
	if err := events.Decode(kind, m.Data, v); err != nil {
		if !json.Valid(m.Data) {
			return reasonMalformed, err
		}
		return reasonInvalid, err
	}
	if err := n.schemas.Validate(schema, m.Data); err != nil {
		return reasonSchema, err
	}
	if v.service() != service {
		return reasonMismatch, fmt.Errorf("%s: service %q in the body differs from %q in the subject", kind, v.service(), service)
	}
	return "", nil
}

type announceMsg struct{ events.Announce }

func (a *announceMsg) service() string { return a.Service }

type deregisterMsg struct{ events.Deregister }

func (d *deregisterMsg) service() string { return d.Service }

func (n *Node) handleAnnounce(ctx context.Context, m *nats.Msg) {
	a := &announceMsg{events.Announce{Weight: events.DefaultWeight}}
	if reason, err := n.decodeControl(m, "announce", schemas.Announce, n.cfg.Subjects.ParseAnnounce, a); err != nil {
		n.reject(m, reason, err)
		return
	}
	if other, taken := n.reg.OtherService(a.ID, a.Service); taken {
		n.reject(m, reasonIDTaken, fmt.Errorf("announce: id %s is registered under service %q; an id names one instance of one service", a.ID, other))
		return
	}
	key := events.InstanceKey(a.Service, a.ID)
	if _, _, known := n.reg.GetRev(key); !known && n.owned[key] == nil {
		created, err := n.register(ctx, a.Announce)
		if err != nil {
			n.fail(m, err)
			return
		}
		if created {
			n.ack(m, a.ID)
			return
		}
		n.claim(ctx)
	}
	if err := n.reannounce(ctx, key, a.Announce); err != nil {
		n.fail(m, err)
		return
	}
	n.ack(m, a.ID)
}

// reannounce applies an announce to an existing record. The owner writes
// itself as owner too; another node leaves the owner field alone. Both
// writes are revision-checked.
func (n *Node) reannounce(ctx context.Context, key string, a events.Announce) error {
	t := n.owned[key]
	rec, rev, _ := n.reg.GetRev(key)
	if t != nil {
		rec, rev = t.rec, t.rev
	}
	if sameAnnounce(rec.Announce, a) {
		n.m.announces("unchanged").Inc()
		return nil
	}
	mutate := func(r *events.InstanceRecord) { r.Announce = a }
	if t != nil {
		if err := n.update(ctx, t, mutate); err != nil {
			return err
		}
	} else {
		w := n.write(ctx, rec, rev, mutate)
		if w.err != nil {
			return w.err
		}
		n.reg.Put(w.rec, w.rev)
	}
	n.m.announces("updated").Inc()
	n.log.Info("instance updated", "service", a.Service, "instance_id", a.ID, "version", a.Version, "weight", a.Weight, "owner", rec.Node)
	return nil
}

// register records a new instance as passing, with its owner in the node
// field: its announce is a sign of life. If the key exists already (the
// watch has not delivered it yet), it takes the stored record in instead
// (adopting it if this node owns it) and reports created false, for the
// caller to update it with the announce.
func (n *Node) register(ctx context.Context, a events.Announce) (created bool, err error) {
	now := time.Now().UTC()
	owner := events.Owner(n.memberIDs, a.ID)
	rec := events.InstanceRecord{Announce: a, Status: events.Passing, Node: owner, RegisteredAt: now, UpdatedAt: now}
	data, err := json.Marshal(rec)
	if err != nil {
		return false, fmt.Errorf("encode record: %w", err)
	}
	kctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	rev, err := n.kv.Instances.Create(kctx, rec.Key(), data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		e, gerr := n.kv.Instances.Get(kctx, rec.Key())
		if gerr != nil {
			n.m.kvErrors.Inc()
			return false, fmt.Errorf("read existing record %s: %w", rec.Key(), gerr)
		}
		cur, derr := events.DecodeInstanceRecord(e.Value())
		if derr != nil {
			return false, fmt.Errorf("existing record %s: %w", rec.Key(), derr)
		}
		n.reg.Put(cur, e.Revision())
		if n.owns(cur.ID) {
			n.adopt(cur, e.Revision())
		}
		return false, nil
	}
	if err != nil {
		n.m.kvErrors.Inc()
		return false, fmt.Errorf("create record %s: %w", rec.Key(), err)
	}
	n.m.kvWrites("create").Inc()
	n.reg.Put(rec, rev)
	if owner == n.id {
		n.track(rec, rev)
	}
	n.m.announces("registered").Inc()
	n.publishHealth(rec, "", "registered")
	n.log.Info("instance registered", "service", a.Service, "instance_id", a.ID, "version", a.Version, "weight", a.Weight)
	return true, nil
}

// update writes t's record changed by mutate, with this node as owner,
// checked against the revision the node last saw, and records the outcome.
func (n *Node) update(ctx context.Context, t *tracked, mutate func(*events.InstanceRecord)) error {
	return n.apply(t, n.write(ctx, t.rec, t.rev, func(r *events.InstanceRecord) { mutate(r); n.setOwner(r) }))
}

// written is the outcome of a write, for apply.
type written struct {
	rec  events.InstanceRecord
	rev  uint64
	gone bool // the key was deleted by someone else
	err  error
}

// write is the I/O half of update: it stores rec changed by mutate (which
// sets the owner field when the writer owns the record) at
// revision rev. On a conflict it reloads the record and applies mutate
// once more, so two writers that briefly disagree never overwrite each
// other blindly. It touches no node state, so many can run at once.
func (n *Node) write(ctx context.Context, rec events.InstanceRecord, rev uint64, mutate func(*events.InstanceRecord)) written {
	key := rec.Key()
	kctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		next := rec
		mutate(&next)
		next.UpdatedAt = time.Now().UTC()
		data, err := json.Marshal(next)
		if err != nil {
			return written{err: fmt.Errorf("encode record: %w", err)}
		}
		newRev, err := n.kv.Instances.Update(kctx, key, data, rev)
		if err == nil {
			n.m.kvWrites("update").Inc()
			return written{rec: next, rev: newRev}
		}
		if attempt > 0 || !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			n.m.kvErrors.Inc()
			return written{err: fmt.Errorf("update record %s: %w", key, err)}
		}
		e, gerr := n.kv.Instances.Get(kctx, key)
		if errors.Is(gerr, jetstream.ErrKeyNotFound) {
			return written{gone: true, err: fmt.Errorf("update record %s: it was deleted", key)}
		}
		if gerr != nil {
			n.m.kvErrors.Inc()
			return written{err: fmt.Errorf("reload record %s after conflict: %w", key, gerr)}
		}
		cur, derr := events.DecodeInstanceRecord(e.Value())
		if derr != nil || cur.Key() != key {
			// Someone put garbage over the record: the last good one,
			// changed as intended, goes back over it.
			n.m.rejected(reasonBadRecord).Inc()
			n.log.Warn("replacing an invalid record with the last good one", "key", key, "revision", e.Revision(), "err", derr)
			rev = e.Revision()
			continue
		}
		rec, rev = cur, e.Revision()
	}
}

// apply records a write's outcome in the node's state; loop only.
func (n *Node) apply(t *tracked, w written) error {
	if w.gone {
		n.untrack(t)
	}
	if w.err != nil {
		return w.err
	}
	t.rec, t.rev = w.rec, w.rev
	n.reg.Put(w.rec, w.rev)
	return nil
}

// maxParallelWrites bounds the KV writes one batch has in flight: enough
// to hide a replicated stream's round trip, few enough not to swamp it.
const maxParallelWrites = 32

// job is one record for updateAll to change.
type job struct {
	t      *tracked
	mutate func(*events.InstanceRecord)
}

// updateAll runs every job's write at once and applies the outcomes in
// order. A round in which many instances change (a rack fails, a restarted
// node claims its records) costs about one KV round trip per
// maxParallelWrites records instead of one per record.
func (n *Node) updateAll(ctx context.Context, jobs []job) []error {
	outs := make([]written, len(jobs))
	sem := make(chan struct{}, maxParallelWrites)
	var wg sync.WaitGroup
	for i, j := range jobs {
		rec, rev := j.t.rec, j.t.rev
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			outs[i] = n.write(ctx, rec, rev, j.mutate)
		})
	}
	wg.Wait()
	errs := make([]error, len(jobs))
	for i, j := range jobs {
		errs[i] = n.apply(j.t, outs[i])
	}
	return errs
}

func sameAnnounce(a, b events.Announce) bool {
	return a.Version == b.Version && a.Weight == b.Weight && a.AZ == b.AZ && a.Hostname == b.Hostname &&
		slices.Equal(a.Endpoints, b.Endpoints) && maps.Equal(a.Metadata, b.Metadata)
}

func (n *Node) handleDeregister(ctx context.Context, m *nats.Msg) {
	d := &deregisterMsg{}
	if reason, err := n.decodeControl(m, "deregister", schemas.Deregister, n.cfg.Subjects.ParseDeregister, d); err != nil {
		n.reject(m, reason, err)
		return
	}
	reason := d.Reason
	if reason == "" {
		reason = "deregistered"
	}
	rec, rev, known := n.reg.GetRev(events.InstanceKey(d.Service, d.ID))
	if !known {
		// Unknown: nothing to remove, and deregistering is idempotent.
		n.ack(m, d.ID)
		return
	}
	// Whoever owns it, leaving needs no owner's say.
	if err := n.remove(ctx, rec, rev, reason); err != nil {
		n.fail(m, err)
		return
	}
	n.ack(m, d.ID)
}

// remove deletes rec (last seen at rev), stops tracking it if this node
// owns it, and publishes its deregistered event.
func (n *Node) remove(ctx context.Context, rec events.InstanceRecord, rev uint64, reason string) error {
	key := rec.Key()
	kctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	if err := n.kv.Instances.Delete(kctx, key); err != nil {
		n.m.kvErrors.Inc()
		return fmt.Errorf("delete record %s: %w", key, err)
	}
	n.m.kvWrites("delete").Inc()
	n.reg.Delete(key, rev)
	if t := n.owned[key]; t != nil {
		n.untrack(t)
	}
	prev := rec.Status
	rec.Status = events.Deregistered
	n.publishHealth(rec, prev, reason)
	n.log.Info("instance deregistered", "service", rec.Service, "instance_id", rec.ID, "reason", reason)
	return nil
}

// handleRound judges one heartbeat round and writes what changed, all
// transitions of the round at once.
func (n *Node) handleRound(ctx context.Context, start time.Time, results []heartbeat.Result) {
	type change struct {
		t    *tracked
		next heartbeat.State
		prev events.Status // the stored status the event reports as previous
		why  string
	}
	if n.log.Enabled(ctx, slog.LevelDebug) {
		answered := 0
		for _, r := range results {
			if r.Err == nil {
				answered++
			}
		}
		n.log.Debug("heartbeat round", "instances", len(results), "answered", answered, "took", time.Since(start).Round(time.Microsecond))
	}
	// What answered is worth showing even in a round not judged.
	n.recordRTTs(results)
	if n.selfPreserve(results) {
		return
	}
	timing := n.Timing()
	var judged []*tracked
	var changes []change
	for _, r := range results {
		t := n.byID[r.ID]
		if t == nil {
			continue // deregistered while the round ran
		}
		if r.Void() {
			// This node was cut off, not the instance: judging the
			// silence would flap every instance it owns.
			continue
		}
		n.m.heartbeats.Inc()
		if r.Err != nil {
			n.m.missed.Inc()
			if errors.Is(r.Err, heartbeat.ErrBadReply) {
				n.m.rejected(reasonBadReply).Inc()
			}
		} else {
			n.m.rtt.Update(r.RTT.Seconds())
		}
		next, why := heartbeat.Judge(t.judge, r.Verdict(), timing.Thresholds)
		judged = append(judged, t)
		if next.Status == t.judge.Status {
			t.judge = next
			continue
		}
		if r.Err != nil {
			why = fmt.Sprintf("%s (last: %v)", why, r.Err)
		}
		changes = append(changes, change{t: t, next: next, prev: t.rec.Status, why: why})
	}

	jobs := make([]job, len(changes))
	for i, c := range changes {
		status := c.next.Status
		jobs[i] = job{t: c.t, mutate: func(r *events.InstanceRecord) { r.Status = status; n.setOwner(r) }}
	}
	errs := n.updateAll(ctx, jobs)
	for i, c := range changes {
		t, prev := c.t, c.prev
		if errs[i] != nil {
			// The judge keeps the old status, so the next round tries
			// the transition again.
			n.log.Error("record transition", "service", t.rec.Service, "instance_id", t.rec.ID, "status", c.next.Status, "err", errs[i])
			c.next.Status = t.judge.Status
			t.judge = c.next
			continue
		}
		t.judge = c.next
		if c.next.Status == events.Critical {
			t.criticalSince = time.Now()
		} else {
			t.criticalSince = time.Time{}
		}
		n.m.transitions(c.next.Status).Inc()
		n.publishHealth(t.rec, prev, c.why)
		n.log.Info("instance health changed", "service", t.rec.Service, "instance_id", t.rec.ID, "status", c.next.Status, "previous", prev, "reason", c.why)
	}

	for _, t := range judged {
		if n.owned[t.rec.Key()] != t {
			continue // gone during the writes
		}
		if t.judge.Status == events.Critical && !t.criticalSince.IsZero() && start.Sub(t.criticalSince) >= timing.DeregisterAfter {
			reason := fmt.Sprintf("critical for %v", timing.DeregisterAfter)
			if err := n.remove(ctx, t.rec, t.rev, reason); err != nil {
				n.log.Error("remove critical instance", "service", t.rec.Service, "instance_id", t.rec.ID, "err", err)
			}
		}
	}
}

// selfPreserve decides whether a round is this node's fault rather than
// its instances': more than the set share of the instances it owns that
// are not critical are failing (see SelfPreservation), or the node was
// disconnected. Counting every failing instance that is not critical yet,
// not only those that fell silent this round, catches an outage that
// spreads over the rounds it takes to go critical. It says so on entering
// and leaving that state.
func (n *Node) selfPreserve(results []heartbeat.Result) bool {
	var live, failing, void int
	for _, r := range results {
		t := n.byID[r.ID]
		if t == nil {
			continue
		}
		if r.Void() {
			void++
			n.m.void.Inc()
			continue
		}
		if t.judge.Status == events.Critical {
			continue
		}
		live++
		if r.Err != nil {
			failing++
		}
	}
	sp := n.Timing().SelfPreservation
	reason := ""
	switch {
	case void > 0 && void == len(results):
		reason = "lost its NATS connection"
	case failing >= sp.MinFailures && float64(failing) > sp.Share*float64(live):
		reason = fmt.Sprintf("%d of %d live instances failing at once", failing, live)
	}
	if reason != "" {
		n.m.preserved.Inc()
		if !n.preserving {
			n.preserving = true
			n.m.preserving.Store(true)
			n.log.Warn("self-preservation: judging nothing while this node seems cut off", "reason", reason)
			n.publishNode(events.NodeSelfPreservation, reason)
		}
		return true
	}
	if n.preserving {
		n.preserving = false
		n.m.preserving.Store(false)
		n.log.Info("self-preservation over: instances answer again")
		n.publishNode(events.NodeNormal, "instances answer again")
	}
	return false
}

// publishNode publishes a node event: on entering and leaving
// self-preservation.
func (n *Node) publishNode(state, reason string) {
	data, err := json.Marshal(events.NodeEvent{Node: n.id, State: state, Reason: reason, TS: time.Now().UTC()})
	if err == nil {
		err = n.nc.Publish(n.cfg.Subjects.NodeEvent(n.id), data)
	}
	if err != nil {
		n.log.Warn("publish node event", "state", state, "err", err)
	}
}

func (n *Node) publishHealth(rec events.InstanceRecord, prev events.Status, reason string) {
	ev := events.HealthEvent{
		ID: rec.ID, Service: rec.Service, Status: rec.Status, Previous: prev,
		Reason: reason, Node: n.id, TS: time.Now().UTC(),
	}
	data, err := json.Marshal(ev)
	if err == nil {
		err = n.nc.Publish(n.cfg.Subjects.Health(rec.Service, rec.ID), data)
	}
	if err != nil {
		n.log.Warn("publish health event", "service", rec.Service, "instance_id", rec.ID, "err", err)
	}
}

func (n *Node) handleServices(m *nats.Msg) {
	if err := events.CheckSize("services query", m.Data); err != nil {
		n.reject(m, reasonTooLarge, err)
		return
	}
	n.respondJSON(m, n.reg.Services())
}

func (n *Node) handleInstances(m *nats.Msg) {
	q, err := events.DecodeInstancesQuery(m.Data)
	if err != nil {
		n.reject(m, reasonBadQuery, err)
		return
	}
	n.respondJSON(m, n.reg.Instances(q))
}

func (n *Node) respondJSON(m *nats.Msg, v any) {
	if m.Reply == "" {
		return
	}
	data, err := json.Marshal(v)
	if err != nil {
		n.fail(m, fmt.Errorf("encode answer: %w", err))
		return
	}
	if max := n.nc.MaxPayload(); int64(len(data)) > max {
		n.reject(m, reasonTooLarge, fmt.Errorf("answer of %d bytes exceeds the server's max payload of %d; filter by service or status", len(data), max))
		return
	}
	if err := n.nc.Publish(m.Reply, data); err != nil {
		n.log.Warn("answer query", "subject", m.Subject, "err", err)
	}
}

func (n *Node) ack(m *nats.Msg, id string) {
	if m.Reply == "" {
		return
	}
	data, _ := json.Marshal(events.Ack{OK: true, ID: id, Node: n.id}) // plain fields always encode
	if err := n.nc.Publish(m.Reply, data); err != nil {
		n.log.Warn("acknowledge", "subject", m.Subject, "err", err)
	}
}

// reject answers bad input with a 400 that says what was wrong, counts it,
// and logs it; the registry is untouched.
func (n *Node) reject(m *nats.Msg, reason string, err error) {
	n.m.rejected(reason).Inc()
	n.log.Warn("rejected message", "subject", truncate(m.Subject), "reason", reason, "err", err)
	if m.Reply != "" {
		n.replyMsg(m, events.ErrorMsg(events.CodeBadRequest, err.Error()))
	}
}

// fail answers a request the node could not carry out through no fault of
// the sender's (KV unavailable): a 503, so the sender tries again.
func (n *Node) fail(m *nats.Msg, err error) {
	n.m.rejected(reasonKV).Inc()
	n.log.Error("request failed", "subject", truncate(m.Subject), "err", err)
	if m.Reply != "" {
		n.replyMsg(m, events.ErrorMsg(events.CodeUnavailable, err.Error()))
	}
}

// replyMsg sends out to m's reply subject (m comes from a micro endpoint
// and is not bound to a subscription, so m.RespondMsg cannot).
func (n *Node) replyMsg(m *nats.Msg, out *nats.Msg) {
	out.Subject = m.Reply
	_ = n.nc.PublishMsg(out) // the sender's own timeout covers a lost reply
}

func truncate(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
