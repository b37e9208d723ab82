package discovery

import (
	"fmt"
	"io"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/registry"
)

// nodeMetrics are the node's series in its program's metrics set. Labels
// are bounded: reasons, outcomes and statuses, never an instance id.
type nodeMetrics struct {
	set        *metrics.Set
	heartbeats *metrics.Counter
	missed     *metrics.Counter
	kvErrors   *metrics.Counter
	void       *metrics.Counter
	overloaded *metrics.Counter
	// roundTook is a round's time from its first heartbeat to its
	// judgement handled.
	roundTook  *metrics.Summary
	rtt        *metrics.Histogram
	rebalances *metrics.Counter
	preserved  *metrics.Counter
	owned      atomic.Int64
	members    atomic.Int64
	preserving atomic.Bool
}

func newNodeMetrics(set *metrics.Set, reg *registry.Registry, ready func() bool) *nodeMetrics {
	m := &nodeMetrics{
		set:        set,
		heartbeats: set.GetOrCreateCounter("hail_discovery_heartbeats_sent_total"),
		missed:     set.GetOrCreateCounter("hail_discovery_heartbeats_missed_total"),
		kvErrors:   set.GetOrCreateCounter("hail_discovery_kv_errors_total"),
		void:       set.GetOrCreateCounter("hail_discovery_heartbeats_void_total"),
		overloaded: set.GetOrCreateCounter("hail_discovery_rounds_overloaded_total"),
		roundTook:  set.GetOrCreateSummary("hail_discovery_round_duration_seconds"),
		rtt:        set.GetOrCreateHistogram("hail_discovery_heartbeat_rtt_seconds"),
		rebalances: set.GetOrCreateCounter("hail_discovery_rebalances_total"),
		preserved:  set.GetOrCreateCounter("hail_discovery_self_preservation_rounds_total"),
	}
	m.members.Store(1)
	// Labelled series exist from the start, at 0, so that a dashboard or
	// an alert on them has something to read before the first event.
	for _, r := range []string{reasonTooLarge, reasonSubject, reasonMalformed, reasonInvalid, reasonSchema, reasonMismatch,
		reasonBadQuery, reasonKV, reasonBadRecord, reasonBadReply, reasonIDTaken, reasonReplyTo, reasonForeignReply, reasonBusy, reasonIDMismatch} {
		m.rejected(r)
	}
	for _, st := range []events.Status{events.Passing, events.Warning, events.Critical, events.Deregistered} {
		m.transitions(st)
	}
	for _, op := range []string{"create", "update", "delete"} {
		m.kvWrites(op)
	}
	for _, o := range []string{"registered", "updated", "unchanged"} {
		m.announces(o)
	}
	set.GetOrCreateGauge("hail_discovery_nodes", func() float64 { return float64(m.members.Load()) })
	set.GetOrCreateGauge("hail_discovery_self_preservation", func() float64 {
		if m.preserving.Load() {
			return 1
		}
		return 0
	})
	set.GetOrCreateGauge("hail_discovery_owned_instances", func() float64 { return float64(m.owned.Load()) })
	set.GetOrCreateGauge("hail_discovery_registry_instances", func() float64 { return float64(reg.Len()) })
	// Written at each scrape from the registry, so a service's series go
	// when its last instance does.
	set.RegisterMetricsWriter(func(w io.Writer) {
		for _, s := range reg.Services() {
			for _, c := range []struct {
				status events.Status
				n      int
			}{{events.Passing, s.Passing}, {events.Warning, s.Warning}, {events.Critical, s.Critical}} {
				metrics.WriteGaugeUint64(w, fmt.Sprintf(`hail_discovery_instances{service=%q,status=%q}`, s.Service, c.status), uint64(c.n))
			}
		}
	})
	set.GetOrCreateGauge("hail_discovery_ready", func() float64 {
		if ready() {
			return 1
		}
		return 0
	})
	return m
}

func (m *nodeMetrics) rejected(reason string) *metrics.Counter {
	return m.set.GetOrCreateCounter(fmt.Sprintf(`hail_discovery_rejected_total{reason=%q}`, reason))
}

func (m *nodeMetrics) announces(outcome string) *metrics.Counter {
	return m.set.GetOrCreateCounter(fmt.Sprintf(`hail_discovery_announces_total{outcome=%q}`, outcome))
}

func (m *nodeMetrics) kvWrites(op string) *metrics.Counter {
	return m.set.GetOrCreateCounter(fmt.Sprintf(`hail_discovery_kv_writes_total{op=%q}`, op))
}

func (m *nodeMetrics) transitions(to events.Status) *metrics.Counter {
	return m.set.GetOrCreateCounter(fmt.Sprintf(`hail_discovery_transitions_total{status=%q}`, to))
}
