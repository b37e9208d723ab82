package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"golang.org/x/sync/errgroup"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/heartbeat"
	"github.com/hailsd/hail/registry"
	"github.com/hailsd/hail/schemas"
)

// Node is one discovery node: wiring. Its work is done by types that own
// their state and know nothing of it: registrations (announces and
// deregisters), rounds (heartbeat rounds), queries (registry queries),
// records (every change to a record, into the store, the registry and the
// owned set), members and ownedSet. Those that change state run on its
// loop goroutine alone: NATS callbacks, the registry's changes, the
// hail_nodes watch and the heartbeat tracker hand their work to the loop,
// so there are no locks around that state and events are applied in the
// order they arrive.
type Node struct {
	cfg       Config
	id        string
	nc        *nats.Conn
	kv        *bus.Buckets
	log       *slog.Logger
	m         *nodeMetrics
	reg       *registry.Follower
	nodes     *registry.Nodes // hail_nodes, run by the node
	store     recordStore
	reply     replier
	replies   replyRule
	startedAt time.Time

	work chan job
	// claimLater: a batch of claims is due (claim); loop-owned.
	claimLater bool
	// urgent is work the loop takes before any in work: heartbeat rounds'
	// judgements and membership changes, which a burst of announces must
	// not delay (a round judged late makes instances re-announce, which
	// makes the burst worse).
	urgent  chan func(context.Context)
	refresh chan struct{}
	ready   atomic.Bool
	serving chan struct{} // closed when the node first becomes ready
	// bucketsLost: a bucket was deleted under the node (guardBuckets).
	bucketsLost atomic.Bool
	timing      *liveTiming

	// Loop-owned.
	owned   *ownedSet
	members *members
	records *records
	regs    *registrations
	rounds  *rounds
	queries queries
	remote  *remote

	disconnects *disconnects
	// live is every identity's live connections (connects.go): the
	// advisories' reader writes it, the rounds read it.
	live *liveConns
	pub  publisher
}

// New makes a node; Run starts it.
func New(nc *nats.Conn, kv *bus.Buckets, cfg Config) (*Node, error) {
	cfg.setDefaults()
	cfg.Region = regionOf(nc, cfg.Region)
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
	log := cfg.Logger.With("component", "discovery", "node_id", cfg.NodeID)
	n := &Node{
		cfg: cfg, id: cfg.NodeID, nc: nc, kv: kv, log: log,
		work:    make(chan job, workQueue),
		urgent:  make(chan func(context.Context), 16),
		refresh: make(chan struct{}, 1),
		serving: make(chan struct{}),
		timing:  newLiveTiming(cfg.Timing),
		owned:   newOwnedSet(),
		members: newMembers(cfg.NodeID),
	}
	n.reg = registry.NewFollower(kv.Instances, registry.FollowConfig{Logger: log, Metrics: cfg.Metrics, Invalid: func() { n.m.rejected(reasonBadRecord).Inc() }})
	n.nodes = registry.NewNodes(kv.Nodes, registry.FollowConfig{Logger: log, Metrics: cfg.Metrics})
	n.m = newNodeMetrics(cfg.Metrics, n.reg.Registry, n.Ready)
	n.live = newLiveConns(cfg.Metrics, maxLiveConns)
	n.disconnects = newDisconnects(cfg.Metrics, nc.Opts, n.live)
	n.store = recordStore{kv: kv, m: n.m, log: log, region: cfg.Region}
	n.reply = replier{nc: nc, node: n.id, log: log, quiet: newQuietLog(log), m: n.m}
	n.replies = newReplyRule(nc)
	pub := publisher{nc: nc, subjects: cfg.Subjects, node: n.id, region: cfg.Region, log: log, m: n.m}
	n.pub = pub
	n.records = &records{self: n.id, store: n.store, reg: n.reg, owned: n.owned, members: n.members, m: n.m, log: log, submit: n.submit}
	n.regs = &registrations{
		work: n.work, control: controlDecoder{subjects: cfg.Subjects, schemas: set}, reply: n.reply,
		reg: n.reg, nodes: n.nodes, store: n.store, records: n.records, pub: pub, m: n.m, log: log, adm: newAdmission(cfg.Metrics),
		repeats: newRepeats(repeatBytes, cfg.Metrics), holdUnscoped: nc.Opts.InboxPrefix == "",
	}
	n.rounds = &rounds{owned: n.owned, records: n.records, timing: n.timing, pub: pub, m: n.m, log: log, losses: newServerLosses(cfg.Metrics, nc.ConnectedServerId, log), live: n.live}
	if n.remote, err = newRemote(nc, remoteConfig{region: cfg.Region, regions: cfg.RemoteRegions, stale: cfg.RemoteStale, replicas: kv.Replicas, log: log, set: cfg.Metrics}); err != nil {
		return nil, err
	}
	n.queries = queries{node: n.id, region: cfg.Region, reg: n.reg, remote: n.remote, rtts: n.rounds.RTTs, reply: n.reply}
	return n, nil
}

// ID is the node's id.
func (n *Node) ID() string { return n.id }

// Registry is the registry the node answers from: shared with the
// program's console, so a process follows hail_instances once.
func (n *Node) Registry() *registry.Follower { return n.reg }

// Nodes is the node's follower of hail_nodes, which it runs: the live
// nodes, shared with the program's console.
func (n *Node) Nodes() *registry.Nodes { return n.nodes }

// RTTs are the heartbeat round-trip times of the instances the node owns
// that answered its last round, by id.
func (n *Node) RTTs() map[string]time.Duration { return n.rounds.RTTs() }

// Timing is the timing in force.
func (n *Node) Timing() Timing { return n.timing.load() }

// Reconfigure changes the node's timing while it runs: the next heartbeat
// round uses the new interval, timeout and thresholds. An invalid t is
// refused and the timing in force stays.
func (n *Node) Reconfigure(t Timing) error {
	if err := t.Validate(); err != nil {
		return fmt.Errorf("reconfigure discovery node: %w", err)
	}
	if old := n.timing.swap(t); old != t {
		n.log.Info("timing changed", "interval", t.Heartbeat.Interval, "timeout", t.Heartbeat.Timeout,
			"missed_to_critical", t.Heartbeat.MissedToCritical, "answered_to_passing", t.Heartbeat.AnsweredToPassing,
			"deregister_after", t.DeregisterAfter)
	}
	return nil
}

func (n *Node) interval() time.Duration { return n.timing.load().Heartbeat.Interval }

// Ready reports whether the node is subscribed, serving, and registered in
// hail_nodes.
func (n *Node) Ready() bool { return n.ready.Load() && !n.bucketsLost.Load() }

// Serving is closed once the node is first ready.
func (n *Node) Serving() <-chan struct{} { return n.serving }

// Run serves until ctx ends, then leaves: it stops taking messages, removes
// its hail_nodes entry and returns. A node runs once; start a new one to
// serve again.
func (n *Node) Run(ctx context.Context) error {
	n.startedAt = time.Now().UTC()
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error { return n.reg.Run(gctx) })
	g.Go(func() error { return n.nodes.Run(gctx) })
	// The live nodes, then the records already in KV, are loaded before
	// any announce is taken, so a restarted node resumes heartbeating its
	// share instead of treating their announces as new registrations.
	if err := n.loadInitial(gctx); err != nil {
		stopRun()
		if werr := g.Wait(); werr != nil {
			err = errors.Join(err, werr)
		}
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err
	}
	tr, err := heartbeat.NewTracker(n.nc, n.cfg.Subjects, n.id, func() time.Duration { return n.Timing().Heartbeat.Timeout })
	if err != nil {
		stopRun()
		return errors.Join(err, g.Wait())
	}
	defer tr.Close()
	tr.Pace(beatPace)
	n.records.kick = tr.Kick
	// Before subscribing: the handlers read the rule.
	n.replies.ownInbox(tr.Inbox())

	adv, err := n.subscribeAdvisories()
	if err != nil {
		stopRun()
		return errors.Join(err, g.Wait())
	}
	g.Go(func() error { return n.loop(gctx) })
	g.Go(func() error { return n.watchDisconnects(gctx, adv) })
	g.Go(func() error { return n.watchServerLosses(gctx) })
	g.Go(func() error { return n.guardBuckets(gctx) })
	g.Go(func() error { return n.remote.run(gctx) })
	g.Go(func() error { return n.refreshNodeRecord(gctx) })
	g.Go(func() error { n.regs.holdBeats(gctx, n.interval); return nil })
	g.Go(func() error {
		tr.Run(gctx, n.interval, n.owned.ids, func(start time.Time, rs []heartbeat.Result) {
			n.submitUrgent(gctx, func(ctx context.Context) { n.rounds.handle(ctx, start, rs) })
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
	// Every instance of the region announces again, spread over a window
	// that grows with the region, so a large one is not one burst.
	discover, _ := json.Marshal(events.Discover{SpreadMS: events.DiscoverSpreadFor(n.reg.Len()).Milliseconds()})
	if err := n.nc.Publish(n.cfg.Subjects.Discover(), discover); err != nil {
		n.log.Warn("publish discover", "err", err)
	}
	n.log.Info("discovery node serving", "instances", len(n.owned.ids()), "interval", n.interval())

	<-gctx.Done()
	n.ready.Store(false)
	// The entry goes first, so the other nodes take this one's instances
	// over while it winds down, not after: its heartbeats have stopped,
	// and an instance that hears none for 3 intervals announces again.
	if derr := n.store.deleteNode(ctx, n.id); derr != nil {
		n.log.Warn("remove node entry", "err", derr)
	}
	if err := svc.Close(); err != nil {
		n.log.Warn("stop taking messages", "err", err)
	}
	err = g.Wait()
	n.log.Info("discovery node stopped")
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// loadInitial takes in the live nodes, then the registry as of the start,
// and subscribes to the registry's changes from then on.
func (n *Node) loadInitial(ctx context.Context) error {
	if err := n.loadMembers(ctx); err != nil {
		return err
	}
	n.m.members.Store(int64(n.members.len()))
	n.log.Info("live discovery nodes", "nodes", n.members.len())
	select {
	case <-n.reg.Ready():
	case <-ctx.Done():
		return ctx.Err()
	}
	// Changes from now on reach the loop; the registry read after
	// subscribing covers those before. One seen both ways is applied
	// twice, which revisions make harmless.
	cancel := n.reg.Subscribe(func(c registry.Change) {
		if c.Deleted {
			n.live.recordGone(c.Key, time.Now()) // connects.go: forgotten if it stays gone
		}
		n.enqueue(ctx, job{run: func(ctx context.Context) { n.records.applyChange(ctx, c) }})
	})
	context.AfterFunc(ctx, cancel)
	n.records.adoptOwned()
	n.records.publishTargets()
	n.records.claim(ctx)
	return nil
}

// job is one item of the node's work queue: work to run. Announces and
// deregisters wait in the admission queue, which a job drains.
type job struct {
	run func(context.Context)
}

// submit hands f to the loop; it gives up when ctx ends.
func (n *Node) submit(ctx context.Context, f func(context.Context)) {
	n.enqueue(ctx, job{run: f})
}

func (n *Node) enqueue(ctx context.Context, j job) {
	select {
	case n.work <- j:
	case <-ctx.Done():
	}
}

// submitUrgent queues f before everything in work.
func (n *Node) submitUrgent(ctx context.Context, f func(context.Context)) {
	select {
	case n.urgent <- f:
	case <-ctx.Done():
	}
}

func (n *Node) loop(ctx context.Context) error {
	// The tracker reads its targets once a round: they are published when
	// a burst of work is over, or every publishEvery within one, not after
	// each item (each publish lists every owned instance).
	const publishEvery = 100 * time.Millisecond
	var published time.Time
	for {
		var j job
		select {
		case j.run = <-n.urgent:
		default:
			select {
			case <-ctx.Done():
				return nil
			case j.run = <-n.urgent:
			case j = <-n.work:
			}
		}
		if j.run != nil {
			j.run(ctx)
		}
		if now := time.Now(); len(n.work)+len(n.urgent) == 0 || now.Sub(published) >= publishEvery {
			n.records.publishTargets()
			published = now
		}
	}
}

// subscribe serves the node's subjects as the NATS micro service
// hail-discovery (queue group P.discovery), its id in the metadata.
func (n *Node) subscribe(ctx context.Context) (*bus.Service, error) {
	s := n.cfg.Subjects
	queue := s.DiscoveryQueue()
	// Only a reply subject the sender could own is answered (replyRule);
	// anything else is dropped and counted before any work.
	guard := func(kind requestKind, h nats.MsgHandler) nats.MsgHandler {
		return func(m *nats.Msg) {
			service, id := requester(n.cfg.Subjects, kind, m.Subject)
			if reason := n.replies.answers(kind, m.Reply, service, id); reason != "" {
				n.m.rejected(reason).Inc()
				n.reply.quiet.log(slog.LevelWarn, reason, "ignoring a request whose reply subject its sender cannot own",
					"subject", truncate(m.Subject), "reply", truncate(m.Reply))
				return
			}
			h(m)
		}
	}
	return bus.AddService(n.nc, micro.Config{
		Name:        "hail-discovery",
		Version:     events.Version,
		Description: "hail discovery node: registrations, heartbeats, registry queries",
		Metadata:    map[string]string{"node_id": n.id, "az": n.cfg.AZ, "hostname": n.cfg.Hostname},
	}, []bus.Endpoint{
		{Name: "announce", Subject: s.AnnounceAll(), Queue: queue, Handler: guard(kindAnnounce, func(m *nats.Msg) { n.regs.offerAnnounce(ctx, m) })},
		{Name: "deregister", Subject: s.DeregisterAll(), Queue: queue, Handler: guard(kindDeregister, func(m *nats.Msg) { n.regs.offerDeregister(ctx, m) })},
		{Name: "services", Subject: s.DiscoveryServices(), Queue: queue, Handler: guard(kindQuery, n.queries.services)},
		{Name: "instances", Subject: s.DiscoveryInstances(), Queue: queue, Handler: guard(kindQuery, n.queries.instances)},
		{Name: "rtt", Subject: s.DiscoveryRTT(), Handler: guard(kindQuery, n.queries.rtt)},
	})
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
		case <-t.C:
		}
		if n.ready.Load() {
			if err := n.putNodeRecord(ctx); err != nil {
				n.log.Warn("refresh node entry", "err", err)
			}
		}
	}
}

func (n *Node) putNodeRecord(ctx context.Context) error {
	return n.store.putNode(ctx, events.NodeRecord{
		ID: n.id, AZ: n.cfg.AZ, Hostname: n.cfg.Hostname, StartedAt: n.startedAt, TS: time.Now().UTC(),
	})
}
