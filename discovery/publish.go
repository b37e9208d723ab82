package discovery

import (
	"encoding/json"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
)

// publisher says what happened to the region: health events of instances
// and node events of this node, on NATS.
type publisher struct {
	nc       *nats.Conn
	subjects events.Subjects
	node     string
	region   string
	log      *slog.Logger
	m        *nodeMetrics
}

// health publishes rec's health event: its status now, prev before.
func (p publisher) health(rec events.InstanceRecord, prev events.Status, reason string) {
	ev := events.HealthEvent{
		ID: rec.ID, Service: rec.Service, Status: rec.Status, Previous: prev,
		Reason: events.CutOutput(reason, MaxReason), Node: p.node, TS: time.Now().UTC(), Region: p.region,
	}
	data, err := json.Marshal(ev)
	if err == nil {
		err = p.nc.Publish(p.subjects.Health(rec.Service, rec.ID), data)
	}
	if err != nil {
		p.log.Warn("publish health event", "service", rec.Service, "instance_id", rec.ID, "err", err)
	}
}

// deregistered says that rec, removed, is gone: counted, published and
// logged alike whether it left or was judged away.
func (p publisher) deregistered(rec events.InstanceRecord, reason string) {
	prev := rec.Status
	rec.Status = events.Deregistered
	p.m.transitions(events.Deregistered).Inc()
	p.health(rec, prev, reason)
	p.log.Info("instance deregistered", "service", rec.Service, "instance_id", rec.ID, "reason", reason)
}

// nodeEvent publishes a node event: on entering and leaving
// self-preservation.
func (p publisher) nodeEvent(state, reason string) {
	data, err := json.Marshal(events.NodeEvent{Node: p.node, State: state, Reason: events.CutOutput(reason, MaxReason), TS: time.Now().UTC()})
	if err == nil {
		err = p.nc.Publish(p.subjects.NodeEvent(p.node), data)
	}
	if err != nil {
		p.log.Warn("publish node event", "state", state, "err", err)
	}
}
