package discovery

import (
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/registry"
)

// queries answers hail.discovery.services, .instances and .rtt: from the
// registry and the last round's RTTs in memory, on the NATS callback's
// goroutine (both are safe for that), never on the node's loop.
type queries struct {
	node  string
	reg   *registry.Follower
	rtts  func() map[string]time.Duration
	reply replier
}

func (q queries) services(m *nats.Msg) {
	if err := events.CheckSize("services query", m.Data); err != nil {
		q.reply.reject(m, reasonTooLarge, err)
		return
	}
	q.reply.json(m, q.reg.Services())
}

func (q queries) instances(m *nats.Msg) {
	iq, err := events.DecodeInstancesQuery(m.Data)
	if err != nil {
		q.reply.reject(m, reasonBadQuery, err)
		return
	}
	q.reply.json(m, q.reg.Instances(iq))
}

func (q queries) rtt(m *nats.Msg) {
	rtts := q.rtts()
	rep := events.RTTReport{Node: q.node, RTTMS: make(map[string]float64, len(rtts))}
	for id, d := range rtts {
		rep.RTTMS[id] = float64(d.Microseconds()) / 1000
	}
	q.reply.json(m, rep)
}
