package router

import (
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
)

// A health event can take an instance out of the table before its record
// changes (a "down mark"), and only then: the registry alone brings one
// in.
type healthDown struct {
	service, id, node string
	ts                time.Time
	// disconnected: the owner says the instance's connection closed.
	disconnected bool
}

func (t *Table) onHealth(m *nats.Msg, downs chan<- healthDown) {
	ev, err := events.DecodeHealthEvent(m.Data)
	if err != nil {
		t.m.badEvents.Inc()
		t.log.Debug("ignoring invalid health event", "subject", m.Subject, "err", err)
		return
	}
	if m.Subject != t.cfg.Subjects.Health(ev.Service, ev.ID) {
		// An event about one instance published on another's subject is
		// forged (or broken): it takes nothing out.
		t.m.badEvents.Inc()
		t.log.Debug("ignoring a health event whose subject is not its instance's", "subject", m.Subject)
		return
	}
	if ev.Status != events.Critical && ev.Status != events.Deregistered {
		// Only the registry brings an instance in: a record must exist
		// before anything is sent to it.
		return
	}
	select {
	case downs <- healthDown{service: ev.Service, id: ev.ID, node: ev.Node, ts: ev.TS, disconnected: ev.Status == events.Critical && disconnected(ev.Reason)}:
	default:
		// The KV watch brings the same news a moment later.
	}
}

func (t *Table) applyDown(d healthDown) {
	s := t.services[d.service]
	if s == nil {
		return
	}
	rec, ok := t.reg.Get(events.InstanceKey(d.service, d.id))
	out := rec.Status == events.Critical
	// A closed connection still matters when the record is out already:
	// the owner writes the record before it sends the event, and the
	// record may come first, but attempts still wait on the instance.
	if !ok || (out && !d.disconnected) || rec.UpdatedAt.After(d.ts) {
		return // gone, already out, or the record is newer than the event
	}
	if d.node == "" || d.node != rec.Node {
		// Only the node the registry names as the instance's owner judges
		// it; an event from anyone else takes nothing out.
		t.m.badEvents.Inc()
		t.log.Debug("ignoring a health event not from the instance's owner", "service", d.service, "instance_id", d.id, "node", d.node)
		return
	}
	if d.disconnected {
		t.closings.add(d.service, d.id)
	}
	if out {
		return
	}
	s.down[d.id] = time.Now()
	t.dirty[d.service] = true
}

// lapseDowns lifts down marks older than DownLapse: the registry never
// confirmed them, so the event was stale, lost its record, or was forged
// by a node that still holds the instance's owner id.
func (t *Table) lapseDowns(now time.Time) {
	for name, s := range t.services {
		for id, at := range s.down {
			if now.Sub(at) >= t.cfg.DownLapse {
				delete(s.down, id)
				t.dirty[name] = true
				t.log.Info("a health event's down mark lapsed: the registry did not confirm it", "service", name, "instance_id", id)
			}
		}
	}
}
