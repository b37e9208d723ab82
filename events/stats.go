package events

import "time"

// RouterStats is a router's traffic since it started (totals, so that a
// snapshot lost on the way loses nothing: readers take the difference with
// the router's previous one), published every interval on
// P.stats.router.<router-id> (this repository's addition): what the
// console's golden metrics are made of. A router with no traffic publishes
// too, so a reader can tell "no traffic" from "no router".
type RouterStats struct {
	Router     string         `json:"router" hail:"required"`
	TS         time.Time      `json:"ts" hail:"required"`
	IntervalMS int64          `json:"interval_ms" hail:"required"`
	Services   []ServiceStats `json:"services,omitempty"`
}

// ServiceStats is one service's traffic through one router: its calls as
// callers saw them (after retries), and the attempts each instance took.
type ServiceStats struct {
	Service   string             `json:"service" hail:"required"`
	Calls     Traffic            `json:"calls" hail:"required"`
	Instances map[string]Traffic `json:"instances,omitempty"`
}

// Traffic counts requests, those that failed, and their latencies by
// LatencyBucketsMS (one count per bucket, the last for anything slower).
type Traffic struct {
	Requests  int64   `json:"requests" hail:"required"`
	Errors    int64   `json:"errors" hail:"required"`
	LatencyMS []int64 `json:"latency_ms,omitempty"`
}

// LatencyBucketsMS are the upper bounds of Traffic.LatencyMS's buckets.
var LatencyBucketsMS = []float64{0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000}

// Add adds o to t.
func (t *Traffic) Add(o Traffic) {
	t.Requests += o.Requests
	t.Errors += o.Errors
	if len(o.LatencyMS) > 0 && len(t.LatencyMS) == 0 {
		t.LatencyMS = make([]int64, len(LatencyBucketsMS)+1)
	}
	for i, n := range o.LatencyMS {
		if i < len(t.LatencyMS) {
			t.LatencyMS[i] += n
		}
	}
}

// Sub is t less o, for the change between two totals; a total that went
// down (its counter started again) counts as new.
func (t Traffic) Sub(o Traffic) Traffic {
	if t.Requests < o.Requests || t.Errors < o.Errors {
		return t
	}
	out := Traffic{Requests: t.Requests - o.Requests, Errors: t.Errors - o.Errors}
	if out.Requests == 0 {
		return out
	}
	out.LatencyMS = make([]int64, len(t.LatencyMS))
	for i, n := range t.LatencyMS {
		out.LatencyMS[i] = n
		if i < len(o.LatencyMS) {
			out.LatencyMS[i] -= o.LatencyMS[i]
		}
	}
	return out
}

// Quantile is the latency (in ms, a bucket's upper bound) under which q of
// the requests fall; 0 without requests.
func (t Traffic) Quantile(q float64) float64 {
	var total int64
	for _, n := range t.LatencyMS {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := int64(q*float64(total) + 0.5)
	var seen int64
	for i, n := range t.LatencyMS {
		seen += n
		if seen >= max(rank, 1) {
			if i < len(LatencyBucketsMS) {
				return LatencyBucketsMS[i]
			}
			return 2 * LatencyBucketsMS[len(LatencyBucketsMS)-1]
		}
	}
	return 2 * LatencyBucketsMS[len(LatencyBucketsMS)-1]
}

// Validate bounds what a reader takes in.
func (s *RouterStats) Validate() error {
	if err := ValidateID(s.Router); err != nil {
		return err
	}
	if s.IntervalMS < 0 {
		return invalid("interval_ms %d is negative", s.IntervalMS)
	}
	for i, svc := range s.Services {
		if err := ValidateService(svc.Service); err != nil {
			return invalid("services[%d]: %v", i, err)
		}
		for id, t := range svc.Instances {
			if err := ValidateID(id); err != nil {
				return invalid("services[%d].instances: %v", i, err)
			}
			if !t.valid() {
				return invalid("services[%d].instances[%s]: negative counts or too many buckets", i, id)
			}
		}
		if !svc.Calls.valid() {
			return invalid("services[%d].calls: negative counts or too many buckets", i)
		}
	}
	return nil
}

// valid: no count below zero (a reader subtracts totals), no more buckets
// than LatencyBucketsMS has and one.
func (t Traffic) valid() bool {
	if t.Requests < 0 || t.Errors < 0 || len(t.LatencyMS) > len(LatencyBucketsMS)+1 {
		return false
	}
	for _, n := range t.LatencyMS {
		if n < 0 {
			return false
		}
	}
	return true
}

// DecodeRouterStats parses and validates a router's traffic snapshot (one
// message of it: PROTOCOL.md says how a big one is split).
func DecodeRouterStats(data []byte) (RouterStats, error) {
	var s RouterStats
	if err := Decode("router stats", data, &s); err != nil {
		return s, err
	}
	// Empty lists and maps are absent ones, as the router writes them.
	if len(s.Services) == 0 {
		s.Services = nil
	}
	for i := range s.Services {
		svc := &s.Services[i]
		if len(svc.Instances) == 0 {
			svc.Instances = nil
		}
		svc.Calls.LatencyMS = nilIfEmpty(svc.Calls.LatencyMS)
		for id, t := range svc.Instances {
			t.LatencyMS = nilIfEmpty(t.LatencyMS)
			svc.Instances[id] = t
		}
	}
	return s, nil
}

func nilIfEmpty(s []int64) []int64 {
	if len(s) == 0 {
		return nil
	}
	return s
}
