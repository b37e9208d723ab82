package router

import (
	"fmt"
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

// Outcomes of a routed request, the values of the outcome label.
const (
	outcomeOK          = "ok"          // the instance answered
	outcomeBadRequest  = "bad_request" // 400: not a routable subject
	outcomeNotFound    = "not_found"   // 404: unknown service or endpoint
	outcomeUnavailable = "unavailable" // 503: no instance could take it
	outcomeTimeout     = "timeout"     // 504: an instance took it and did not answer
	outcomeNoReply     = "no_reply"    // the caller asked for no reply
	outcomeCanceled    = "canceled"    // a Client's caller gave up first
	unknownLabel       = "_unknown"    // a service or endpoint label for names not in the table
)

var outcomes = []string{outcomeOK, outcomeBadRequest, outcomeNotFound, outcomeUnavailable, outcomeTimeout, outcomeNoReply, outcomeCanceled}

type tableMetrics struct {
	set        *metrics.Set
	badRecords *metrics.Counter
	badRoutes  *metrics.Counter
	badEvents  *metrics.Counter

	mu    sync.Mutex
	stats map[[2]string]*endpointStats
}

func newTableMetrics(set *metrics.Set, t *Table) *tableMetrics {
	m := &tableMetrics{
		set:        set,
		badRecords: set.GetOrCreateCounter(`hail_router_rejected_total{reason="bad_record"}`),
		badRoutes:  set.GetOrCreateCounter(`hail_router_rejected_total{reason="bad_route"}`),
		badEvents:  set.GetOrCreateCounter(`hail_router_rejected_total{reason="bad_event"}`),
		stats:      map[[2]string]*endpointStats{},
	}
	set.GetOrCreateGauge("hail_router_services", func() float64 { return float64(len(*t.views.Load())) })
	return m
}

// endpointStats are one endpoint's request metrics, made when a view is
// built so that a request only increments counters.
type endpointStats struct {
	traffic  traffic // for the published snapshots
	outcome  map[string]*metrics.Counter
	retries  *metrics.Counter
	ejected  *metrics.Counter
	budget   *metrics.Counter
	duration *metrics.Histogram
}

func (m *tableMetrics) endpoint(service, endpoint string) *endpointStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := [2]string{service, endpoint}
	if s, ok := m.stats[k]; ok {
		return s
	}
	s := &endpointStats{
		outcome:  make(map[string]*metrics.Counter, len(outcomes)),
		retries:  m.set.GetOrCreateCounter(fmt.Sprintf(`hail_router_retries_total{service=%q}`, service)),
		ejected:  m.set.GetOrCreateCounter(fmt.Sprintf(`hail_router_ejections_total{service=%q}`, service)),
		budget:   m.set.GetOrCreateCounter(fmt.Sprintf(`hail_router_retry_budget_exhausted_total{service=%q}`, service)),
		duration: m.set.GetOrCreateHistogram(fmt.Sprintf(`hail_router_request_duration_seconds{service=%q}`, service)),
	}
	for _, o := range outcomes {
		s.outcome[o] = m.set.GetOrCreateCounter(fmt.Sprintf(`hail_router_requests_total{service=%q,endpoint=%q,outcome=%q}`, service, endpoint, o))
	}
	m.stats[k] = s
	return s
}
