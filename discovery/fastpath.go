package discovery

import (
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
)

// fastAck answers, on the subscription's goroutine, an announce that
// changes nothing: a known instance (in the registry, which the node's own
// writes reach as they complete) announced with the same record fields
// (sameAnnounce), whose owner (the record's node) is this node or another
// live one, and of which nothing is queued or being applied (the
// admission's count per key: a changed announce or a deregister of it in
// flight keeps its place, and this one queues behind it; pending is that
// count, read before st). Such an announce
// costs no KV write and no trip through the node's loop: a client that
// announces again because it heard no heartbeat, or a storm of them, is
// answered at the cost of a map lookup. Anything else goes the slow way,
// which answers the same when it finds nothing to change.
func (g *registrations) fastAck(m *nats.Msg, key string, a events.Announce, pending int, st standing) bool {
	if pending > 0 || !st.known || st.taken || !sameAnnounce(st.rec.Announce, a) || !g.liveOwner(st.rec.Node) {
		return false // an id taken is refused the slow way, with its reason
	}
	g.m.announces("unchanged").Inc()
	g.adm.fast.Inc()
	g.reply.ack(m, a.ID)
	return true
}

// standing is what the registry holds of an announce's instance, read
// once as it arrives: its record, and whether another service holds its
// id. The fast path and admission (which holds only instances nothing
// else heartbeats) both go by it.
type standing struct {
	rec   events.InstanceRecord
	known bool
	taken bool
}

func (g *registrations) standing(key string, a events.Announce) standing {
	rec, _, known := g.reg.GetRev(key)
	_, taken := g.reg.OtherService(a.ID, a.Service)
	return standing{rec: rec, known: known, taken: taken}
}

// liveOwner reports whether node, a record's owner, is this node or a
// live one: the instance is heartbeated by it (or by the node taking it
// over, which the slow way would not change either).
func (g *registrations) liveOwner(node string) bool {
	if node == g.records.self {
		return true
	}
	if node == "" || g.nodes == nil {
		return false
	}
	return g.nodes.IsLive(node)
}
