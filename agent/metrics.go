package agent

import (
	"fmt"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/hailsd/hail/events"
)

// metricsSet holds the agent's series. Labels are bounded (kind, status);
// a check's output is never a label.
type metricsSet struct {
	set *metrics.Set
}

func newMetrics(set *metrics.Set, services func() int) *metricsSet {
	m := &metricsSet{set: set}
	for _, k := range []string{events.CheckHTTP, events.CheckTCP, events.CheckGRPC, events.CheckScript, events.CheckTTL} {
		for _, s := range []events.Status{events.Passing, events.Warning, events.Critical} {
			m.checks(k, s)
		}
	}
	set.GetOrCreateGauge("hail_agent_services", func() float64 { return float64(services()) })
	return m
}

func (m *metricsSet) checks(kind string, s events.Status) *metrics.Counter {
	return m.set.GetOrCreateCounter(fmt.Sprintf(`hail_agent_checks_total{kind=%q,status=%q}`, kind, s))
}

// observe counts one result and, for a probe, its duration.
func (m *metricsSet) observe(kind string, s events.Status, took time.Duration) {
	m.checks(kind, s).Inc()
	if took > 0 {
		m.set.GetOrCreateHistogram(fmt.Sprintf(`hail_agent_check_duration_seconds{kind=%q}`, kind)).Update(took.Seconds())
	}
}
