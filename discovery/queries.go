package discovery

import (
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
)

// The node's answers to registry queries: from the registry in memory,
// on the NATS callback's goroutine (the registry is safe for that).

func (n *Node) handleServices(m *nats.Msg) {
	if err := events.CheckSize("services query", m.Data); err != nil {
		n.reply.reject(m, reasonTooLarge, err)
		return
	}
	n.reply.json(m, n.reg.Services())
}

func (n *Node) handleInstances(m *nats.Msg) {
	q, err := events.DecodeInstancesQuery(m.Data)
	if err != nil {
		n.reply.reject(m, reasonBadQuery, err)
		return
	}
	n.reply.json(m, n.reg.Instances(q))
}

func (n *Node) handleRTT(m *nats.Msg) {
	rtts := n.RTTs()
	rep := events.RTTReport{Node: n.id, RTTMS: make(map[string]float64, len(rtts))}
	for id, d := range rtts {
		rep.RTTMS[id] = float64(d.Microseconds()) / 1000
	}
	n.reply.json(m, rep)
}
