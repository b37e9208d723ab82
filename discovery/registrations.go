package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/registry"
)

// registrations takes announces and deregisters: it decodes them as they
// come (on the subscriptions' goroutines), answers at once an announce
// that changes nothing (the fast path), queues the others with the
// deregisters behind admission control, and applies the queue in bursts
// on the node's loop: their KV creates go out together, it writes through
// records and answers the senders.
type registrations struct {
	work    chan job // the node's work queue
	control controlDecoder
	reply   replier
	reg     *registry.Follower
	nodes   *registry.Nodes
	store   recordStore
	records *records
	pub     publisher
	m       *nodeMetrics
	log     *slog.Logger
	adm     *admission
	// repeats skips the checks of an announce decoded before.
	repeats *repeats
	// holdUnscoped: the region is open (the node has no role's inbox
	// prefix), where any client may publish an unscoped heartbeat
	// subject (holds).
	holdUnscoped bool

	// Loop-owned: the instances this node registered in the batch being
	// applied, heartbeated at its end (welcome), and the reply subject of
	// those heartbeats.
	fresh        []string
	welcomeInbox string
}

// maxBurst bounds the items applied as one batch: the KV creates of its
// announces go out together, so a burst of registrations costs a few KV
// round trips, not one per announce, and the loop is back for urgent work
// (a heartbeat round's judgement) soon.
const maxBurst = 256

// workQueue is the node's work queue. Announces and deregisters wait in
// the admission queue instead, which a job in it drains.
const workQueue = 1024

// offerAnnounce takes an announce from its subscription: refused at once
// if invalid (checked once: a repeat of an accepted one is known), answered at once if it changes nothing (fastAck), else
// queued by admission control; a 503 with retry_after_ms when the node
// cannot answer it in its turn.
func (g *registrations) offerAnnounce(ctx context.Context, m *nats.Msg) {
	a, k, seen := g.repeats.get(m.Subject, m.Data)
	if !seen {
		var reason string
		var err error
		if a, reason, err = g.control.announce(m); err != nil {
			g.reply.reject(m, reason, err)
			return
		}
		g.repeats.put(k, m.Subject, len(m.Data), a)
	}
	key := events.InstanceKey(a.Service, a.ID)
	// What is queued of the key first, the registry then: an item of it
	// applied in between is in the registry read after.
	pending := g.adm.pending(key)
	st := g.standing(key, a)
	if g.fastAck(m, key, a, pending, st) {
		return
	}
	o, after, schedule := g.adm.offer(queued{m: m, key: key, a: a, size: announceCost(len(m.Data), a), hold: g.holds(a, st)}, time.Now())
	switch o {
	case deferred:
		g.busy(m, after, "discovery busy: the announce is queued and will be applied in its turn; announce again after retry_after_ms")
	case refused:
		g.busy(m, after, "discovery busy: too many announces queued; announce again after retry_after_ms")
	}
	if schedule {
		g.schedule(ctx)
	}
}

// holds reports whether an instance is heartbeated while its announce
// waits (admission.held): only if nothing else beats it (a registered
// instance has its owner's rounds; an id another service holds is refused
// in its turn), and, for an unscoped instance, only where every client
// may publish its heartbeat subject anyway (an open region): there
// hail.hb.<id> names no service, and a service's credential that may
// not publish it could otherwise have the node beat another service's
// instance by announcing its id.
func (g *registrations) holds(a events.Announce, st standing) bool {
	return !st.known && !st.taken && (a.Scoped || g.holdUnscoped)
}

// offerDeregister takes a deregister from its subscription: it is queued
// behind the announces before it, so that it never overtakes one of the
// same instance.
func (g *registrations) offerDeregister(ctx context.Context, m *nats.Msg) {
	d, reason, err := g.control.deregister(m)
	if err != nil {
		g.reply.reject(m, reason, err)
		return
	}
	o, after, schedule := g.adm.offer(queued{m: m, key: events.InstanceKey(d.Service, d.ID), dereg: &d, size: len(m.Data)}, time.Now())
	if o == refused {
		g.busy(m, after, "discovery busy: too many announces queued; deregister again after retry_after_ms")
	}
	if schedule {
		g.schedule(ctx)
	}
}

// schedule queues a drain in the node's work queue, from a subscription.
func (g *registrations) schedule(ctx context.Context) {
	select {
	case g.work <- job{run: g.drain}:
	case <-ctx.Done():
	}
}

// drain applies a batch from the head of the admission queue.
func (g *registrations) drain(ctx context.Context) {
	g.applyBatch(ctx, g.adm.take(maxBurst), 0)
}

// applyBatch applies batch[from:] in order: each run of announces as one
// burst (handleAnnounces), each deregister after the announces before it.
// A run that registers new instances writes them off the loop and goes on
// when they are written, so the loop judges heartbeat rounds meanwhile:
// on a slow KV a batch's creates take seconds (up to kvTimeout), and a
// judgement waiting behind them leaves silence unnoticed for as long.
// The next batch is taken only when this one is done, so the queue's
// order holds. It queues the next drain, behind the work queued
// meanwhile, while items are left.
func (g *registrations) applyBatch(ctx context.Context, batch []queued, from int) {
	for i := from; i < len(batch); {
		if batch[i].dereg != nil {
			g.handleDeregister(ctx, batch[i].m, *batch[i].dereg)
			i++
			continue
		}
		j := i + 1
		for j < len(batch) && batch[j].dereg == nil {
			j++
		}
		if g.handleAnnounces(ctx, batch[i:j], func(ctx context.Context) { g.applyBatch(ctx, batch, j) }) {
			return
		}
		i = j
	}
	g.welcome()
	if !g.adm.done(batch, time.Now(), g.inRegistry) {
		return
	}
	// On the loop, which alone reads the work queue: never block on it.
	select {
	case g.work <- job{run: g.drain}:
	default:
		go g.schedule(ctx)
	}
}

// inRegistry reports whether key is in the registry.
func (g *registrations) inRegistry(key string) bool {
	_, ok := g.reg.Get(key)
	return ok
}

// onLoop hands f to the node's loop, from another goroutine.
func (g *registrations) onLoop(ctx context.Context, f func(context.Context)) {
	select {
	case g.work <- job{run: f}:
	case <-ctx.Done():
	}
}

// busy answers m with a 503 saying when to come back.
func (g *registrations) busy(m *nats.Msg, after time.Duration, text string) {
	g.m.rejected(reasonBusy).Inc()
	g.reply.quiet.log(slog.LevelDebug, reasonBusy, "announce not taken now: the node is busy", "subject", truncate(m.Subject), "retry_after", after)
	g.reply.send(m, events.BusyMsg(text, after))
}

// handleAnnounces takes a burst of announces in queue order. Those of new
// instances are registered together: their KV creates go out at once,
// from a goroutine of their own, and the rest of the burst is applied on
// the loop when they are written, then next runs; it reports whether it
// left the burst so (later). An announce of a known instance, or of an id
// met before in the burst, is applied after the creates, one at a time,
// as it always was.
func (g *registrations) handleAnnounces(ctx context.Context, batch []queued, next func(context.Context)) (later bool) {
	type announced struct {
		m   *nats.Msg
		a   events.Announce
		rec events.InstanceRecord
	}
	var fresh, rest []announced
	ids := make(map[string]bool, len(batch))
	for _, it := range batch {
		if g.records.known(it.key) || ids[it.a.ID] {
			rest = append(rest, announced{m: it.m, a: it.a})
			continue
		}
		if g.refuseTaken(it.m, it.a) {
			continue
		}
		ids[it.a.ID] = true
		fresh = append(fresh, announced{m: it.m, a: it.a, rec: g.newRecord(it.a)})
	}
	applyRest := func(ctx context.Context) {
		for _, r := range rest {
			g.announce(ctx, r.m, r.a)
		}
	}
	if len(fresh) == 0 {
		applyRest(ctx)
		return false
	}
	recs := make([]events.InstanceRecord, len(fresh))
	for i, f := range fresh {
		recs[i] = f.rec
	}
	go func() {
		cs := g.store.createAll(ctx, recs)
		g.onLoop(ctx, func(ctx context.Context) {
			for i, c := range cs {
				g.registered(ctx, fresh[i].m, fresh[i].a, recs[i], c)
			}
			applyRest(ctx)
			next(ctx)
		})
	}()
	return true
}

// refuseTaken answers a 400 for an id registered under another service.
func (g *registrations) refuseTaken(m *nats.Msg, a events.Announce) bool {
	other, taken := g.reg.OtherService(a.ID, a.Service)
	if taken {
		g.reply.reject(m, reasonIDTaken, fmt.Errorf("announce: id %s is registered under service %q; an id names one instance of one service", a.ID, other))
	}
	return taken
}

// announce applies one announce: a registration, or an update of a known
// instance.
func (g *registrations) announce(ctx context.Context, m *nats.Msg, a events.Announce) {
	if g.refuseTaken(m, a) {
		return
	}
	key := events.InstanceKey(a.Service, a.ID)
	if !g.records.known(key) {
		rec := g.newRecord(a)
		g.registered(ctx, m, a, rec, g.store.create(ctx, rec))
		return
	}
	g.ackReannounce(ctx, m, key, a)
}

// newRecord is the record a new instance is registered with: passing
// (its announce is a sign of life) unless it says what its first check
// round found (an agent's), with its owner in the node field.
func (g *registrations) newRecord(a events.Announce) events.InstanceRecord {
	now := time.Now().UTC()
	status := a.Status
	if status == "" {
		status = events.Passing
	}
	return events.InstanceRecord{Announce: a, Status: status, Node: g.records.owner(a.ID), RegisteredAt: now, UpdatedAt: now, Region: g.store.region}
}

// registered takes in the outcome of rec's create and answers m. If the key
// existed already, the stored record taken in instead is updated with the
// announce.
func (g *registrations) registered(ctx context.Context, m *nats.Msg, a events.Announce, rec events.InstanceRecord, c created) {
	if c.err != nil {
		g.reply.fail(m, c.err)
		return
	}
	switch {
	case g.records.owned.get(rec.Key()) != nil:
		// The watch delivered the record while its create was in flight
		// (handleAnnounces), and the node took it in: its own create's
		// echo, or another node's record.
		if c.exists {
			g.ackReannounce(ctx, m, rec.Key(), a)
			return
		}
	case g.records.created(ctx, rec, c):
		g.ackReannounce(ctx, m, rec.Key(), a)
		return
	}
	if t := g.records.owned.get(rec.Key()); t != nil && !g.records.members.owns(rec.ID) {
		// The live nodes changed while its create was in flight: another
		// node owns it now, and takes it in from the registry's watch.
		g.records.owned.untrack(t)
	}
	g.m.announces("registered").Inc()
	g.fresh = append(g.fresh, events.HeartbeatTarget(rec.Service, rec.ID, rec.Scoped))
	g.pub.health(rec, "", "registered")
	g.log.Info("instance registered", "service", a.Service, "instance_id", a.ID, "version", truncate(a.Version), "weight", a.Weight)
	g.reply.ack(m, a.ID)
}

// ackReannounce applies an announce to a known instance and answers m.
func (g *registrations) ackReannounce(ctx context.Context, m *nats.Msg, key string, a events.Announce) {
	if err := g.reannounce(ctx, key, a); err != nil {
		g.reply.fail(m, err)
		return
	}
	g.reply.ack(m, a.ID)
}

// reannounce applies an announce to an existing record.
func (g *registrations) reannounce(ctx context.Context, key string, a events.Announce) error {
	rec, rev := g.records.current(key)
	if sameAnnounce(rec.Announce, a) {
		g.m.announces("unchanged").Inc()
		return nil
	}
	// The recorded status stays: a re-announce's status is ignored.
	if err := g.records.change(ctx, key, rec, rev, func(r *events.InstanceRecord) { r.Announce = a }); err != nil {
		return err
	}
	g.m.announces("updated").Inc()
	g.log.Info("instance updated", "service", a.Service, "instance_id", a.ID, "version", truncate(a.Version), "weight", a.Weight, "owner", rec.Node)
	return nil
}

// sameAnnounce reports whether an announce would change nothing in a
// record: its status (which only seeds a registration), its timestamp and
// its checks' output and since do not count. Scoped does: it moves the
// instance's heartbeats and requests to other subjects.
func sameAnnounce(a, b events.Announce) bool {
	return a.Version == b.Version && a.Scoped == b.Scoped && a.Weight == b.Weight && a.AZ == b.AZ && a.Hostname == b.Hostname &&
		slices.Equal(a.Endpoints, b.Endpoints) && maps.Equal(a.Metadata, b.Metadata) &&
		a.Address == b.Address && a.Port == b.Port && slices.Equal(a.Tags, b.Tags) && events.SameChecks(a.Checks, b.Checks) &&
		events.SameConn(a.Conn, b.Conn)
}

func (g *registrations) handleDeregister(ctx context.Context, m *nats.Msg, d events.Deregister) {
	why := events.CutOutput(d.Reason, MaxReason)
	if why == "" {
		why = "deregistered"
	}
	rec, rev, known := g.reg.GetRev(events.InstanceKey(d.Service, d.ID))
	if !known {
		// Unknown: nothing to remove, and deregistering is idempotent.
		g.reply.ack(m, d.ID)
		return
	}
	// Whoever owns it, leaving needs no owner's say.
	if err := g.records.remove(ctx, rec, rev); err != nil {
		g.reply.fail(m, err)
		return
	}
	g.pub.deregistered(rec, why)
	g.reply.ack(m, d.ID)
}

// holdBeats heartbeats the instances not registered whose announce waits
// in the admission queue (admission.held), looking heldLooks times an
// interval, until ctx ends: at the first look after each is queued or
// announces the same again, then once it has gone heldAfter intervals
// without a beat. Without a beat a v1 client waiting its turn announces again
// after three intervals, counted from its sending, which in a burst may
// be seconds before its announce is queued. A beat every two to two and a
// quarter intervals leaves three quarters of one for it to arrive, and
// costs the bus half of what one every interval would: a queue of tens
// of thousands is beaten while the instances registered before it are
// too. The beats are the welcome's, marked queued (heard, not registered
// yet), answered to an inbox nobody reads: an instance still queued is
// judged by nobody.
func (g *registrations) holdBeats(ctx context.Context, interval func() time.Duration) {
	const heldAfter, heldLooks = 2, 4
	inbox := g.pub.nc.NewInbox()
	every := interval()
	tick := time.NewTicker(every / heldLooks)
	defer tick.Stop()
	var targets []string
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if d := interval(); d != every {
				every = d
				tick.Reset(every / heldLooks)
			}
			targets = g.adm.held(now, heldAfter*every, targets[:0])
			g.adm.heldBeats.Add(g.beat(targets, inbox, events.Heartbeat{Node: g.records.self, TS: now.UTC(), Queued: true}))
		}
	}
}

// beat sends hb to each target, answered to inbox, and returns how many
// went out: a publish fails only when the connection is closed or its
// buffer full, and then the rest would fail too.
func (g *registrations) beat(targets []string, inbox string, hb events.Heartbeat) (sent int) {
	if len(targets) == 0 {
		return 0
	}
	data, _ := json.Marshal(hb) // plain fields always encode
	for _, target := range targets {
		if err := g.pub.nc.PublishMsg(&nats.Msg{Subject: g.pub.subjects.Heartbeat(target), Reply: inbox, Data: data}); err != nil {
			g.log.Warn("heartbeat outside a round", "queued", hb.Queued, "unsent", len(targets)-sent, "err", err)
			break
		}
		sent++
	}
	return sent
}

// welcome heartbeats the instances the batch just registered, at once,
// rather than at their owner's next round (the owner may be another node,
// which hears of them from the registry's watch): a client that follows PROTOCOL
// v1 alone announces again after three intervals without a heartbeat,
// counted from its announce, and one that waited its turn in a burst has
// less than that left. The beat is the tracker's (seq 0, which no round
// uses); its answers go to an inbox nobody reads, as the round that
// follows judges the instance. Publishing costs the loop a few
// microseconds per instance.
func (g *registrations) welcome() {
	if len(g.fresh) == 0 {
		return
	}
	if g.welcomeInbox == "" {
		g.welcomeInbox = g.pub.nc.NewInbox()
	}
	g.adm.welcomed.Add(g.beat(g.fresh, g.welcomeInbox, events.Heartbeat{Node: g.records.self, TS: time.Now().UTC()}))
	g.fresh = g.fresh[:0]
}
