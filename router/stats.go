package router

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"time"

	"github.com/hailsd/hail/events"
)

// DefaultStatsInterval is how often a router publishes its traffic.
const DefaultStatsInterval = 5 * time.Second

// traffic counts requests, failures and latencies between two snapshots;
// counting one is a few atomic adds, on the request path.
type traffic struct {
	requests, errors atomic.Int64
	buckets          [14]atomic.Int64 // len(events.LatencyBucketsMS)+1
}

func (t *traffic) add(latency time.Duration, failed bool) {
	t.requests.Add(1)
	if failed {
		t.errors.Add(1)
	}
	ms := float64(latency) / float64(time.Millisecond)
	i := 0
	for i < len(events.LatencyBucketsMS) && ms > events.LatencyBucketsMS[i] {
		i++
	}
	t.buckets[i].Add(1)
}

// take returns the counts since the last take and starts again from 0.
func (t *traffic) take() events.Traffic {
	out := events.Traffic{Requests: t.requests.Swap(0), Errors: t.errors.Swap(0)}
	if out.Requests == 0 {
		return out
	}
	out.LatencyMS = make([]int64, len(t.buckets))
	for i := range t.buckets {
		out.LatencyMS[i] = t.buckets[i].Swap(0)
	}
	return out
}

// publishStats publishes a snapshot of the router's traffic every
// interval until ctx ends, an empty one too: readers tell "no traffic"
// from "no router".
func (r *Router) publishStats(ctx context.Context) error {
	every := r.cfg.StatsInterval
	if every < 0 {
		return nil
	}
	t := time.NewTicker(every)
	defer t.Stop()
	subject := r.cfg.Table.Subjects.StatsRouter(r.id)
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			data, err := json.Marshal(r.snapshot(now, every))
			if err == nil {
				err = r.nc.Publish(subject, data)
			}
			if err != nil {
				r.log.Warn("publish traffic stats", "subject", subject, "err", err)
			}
		}
	}
}

// snapshot takes every service's traffic since the last one.
func (r *Router) snapshot(now time.Time, every time.Duration) events.RouterStats {
	out := events.RouterStats{Router: r.id, TS: now.UTC(), IntervalMS: every.Milliseconds()}
	for name, v := range *r.table.views.Load() {
		s := events.ServiceStats{Service: name}
		for _, ep := range v.endpoints {
			s.Calls.Add(ep.stats.traffic.take())
		}
		for id, l := range v.loads {
			if t := l.traffic.take(); t.Requests > 0 {
				if s.Instances == nil {
					s.Instances = map[string]events.Traffic{}
				}
				s.Instances[id] = t
			}
		}
		if s.Calls.Requests > 0 || len(s.Instances) > 0 {
			out.Services = append(out.Services, s)
		}
	}
	return out
}
