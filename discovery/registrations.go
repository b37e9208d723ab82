package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/registry"
)

// registrations takes announces and deregisters: it decodes them, takes a
// burst of announces as one (their KV creates go out together), sheds
// what the node is too busy for, writes through records and answers the
// sender. It runs on the node's loop, and reads on from the node's work
// queue while it gathers a burst.
type registrations struct {
	work    chan job // the node's work queue
	timing  *liveTiming
	control controlDecoder
	reply   replier
	reg     *registry.Follower
	store   recordStore
	records *records
	pub     publisher
	m       *nodeMetrics
	log     *slog.Logger
}

// maxBurst bounds the announces handled as one burst: their KV creates go
// out together, so a burst of registrations costs a few KV round trips,
// not one per announce, and the loop is back for urgent work soon.
const maxBurst = 256

// burst gathers the announces queued right behind first, without waiting
// for more, and handles them together. Registry changes met on the way run
// at once; any other job ends the burst and is returned to run after it,
// so a deregister never overtakes the announce before it.
func (g *registrations) burst(ctx context.Context, first job) (next job) {
	batch := append(make([]job, 0, 16), first)
gather:
	for len(batch) < maxBurst {
		select {
		case j := <-g.work:
			switch {
			case j.announce != nil:
				batch = append(batch, j)
			case j.change:
				j.run(ctx)
			default:
				next = j
				break gather
			}
		default:
			break gather
		}
	}
	g.handleAnnounces(ctx, batch)
	return next
}

// workQueue is the node's work queue; from shedAt on, an announce is
// answered at once with a 503 instead of waiting its turn: a full queue
// would block the subscription, and the announces behind it would wait
// past their senders' timeouts.
const (
	workQueue = 1024
	shedAt    = workQueue * 3 / 4
)

// shed answers m with a cheap 503 (retry later) when the node is too busy
// to take it; the SDK and the agent back off and announce again.
func (g *registrations) shed(m *nats.Msg) bool {
	depth := len(g.work)
	if depth < shedAt {
		return false
	}
	g.busy(m, fmt.Sprintf("discovery busy: %d registrations waiting; retry later", depth))
	return true
}

// stale answers with a 503 an announce that waited its turn longer than
// a heartbeat interval, the SDK's timeout for it: its sender has given up
// and announces again, so a KV write for it now would be work nobody
// waits for, in a burst that is already too much.
func (g *registrations) stale(m *nats.Msg, queued time.Time) bool {
	waited := time.Since(queued)
	if waited <= g.timing.load().Heartbeat.Interval {
		return false
	}
	g.busy(m, fmt.Sprintf("discovery busy: the announce waited %s; retry later", waited.Round(time.Millisecond)))
	return true
}

func (g *registrations) busy(m *nats.Msg, text string) {
	g.m.rejected(reasonBusy).Inc()
	g.reply.quiet.log(slog.LevelDebug, reasonBusy, "announce shed: the node is busy", "subject", truncate(m.Subject), "why", text)
	g.reply.send(m, events.ErrorMsg(events.CodeUnavailable, text))
}

// handleAnnounces takes a burst of announces in queue order. Those of new
// instances are registered together: their KV creates go out at once. An
// announce of a known instance, or of an id met before in the burst, is
// applied after them, one at a time, as it always was.
func (g *registrations) handleAnnounces(ctx context.Context, batch []job) {
	type announced struct {
		m   *nats.Msg
		a   events.Announce
		rec events.InstanceRecord
	}
	var fresh, rest []announced
	ids := make(map[string]bool, len(batch))
	for _, j := range batch {
		if g.stale(j.announce, j.queued) {
			continue
		}
		a, reason, err := g.control.announce(j.announce)
		if err != nil {
			g.reply.reject(j.announce, reason, err)
			continue
		}
		if g.records.known(events.InstanceKey(a.Service, a.ID)) || ids[a.ID] {
			rest = append(rest, announced{m: j.announce, a: a})
			continue
		}
		if g.refuseTaken(j.announce, a) {
			continue
		}
		ids[a.ID] = true
		fresh = append(fresh, announced{m: j.announce, a: a, rec: g.newRecord(a)})
	}
	if len(fresh) > 0 {
		recs := make([]events.InstanceRecord, len(fresh))
		for i, f := range fresh {
			recs[i] = f.rec
		}
		for i, c := range g.store.createAll(ctx, recs) {
			g.registered(ctx, fresh[i].m, fresh[i].a, recs[i], c)
		}
	}
	for _, r := range rest {
		g.announce(ctx, r.m, r.a)
	}
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
	if g.records.created(ctx, rec, c) {
		g.ackReannounce(ctx, m, rec.Key(), a)
		return
	}
	g.m.announces("registered").Inc()
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

func (g *registrations) handleDeregister(ctx context.Context, m *nats.Msg) {
	d, reason, err := g.control.deregister(m)
	if err != nil {
		g.reply.reject(m, reason, err)
		return
	}
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
