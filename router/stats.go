package router

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

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

// total returns the counts so far. Snapshots carry totals, not the change
// since the last one: a snapshot lost on the way (core NATS is at most
// once) loses nothing, the next one has it.
func (t *traffic) total() events.Traffic {
	out := events.Traffic{Requests: t.requests.Load(), Errors: t.errors.Load()}
	if out.Requests == 0 {
		return out
	}
	out.LatencyMS = make([]int64, len(t.buckets))
	for i := range t.buckets {
		out.LatencyMS[i] = t.buckets[i].Load()
	}
	// Trailing empty buckets are left out: most traffic is fast, and a
	// snapshot of thousands of instances is a third smaller without them.
	for len(out.LatencyMS) > 0 && out.LatencyMS[len(out.LatencyMS)-1] == 0 {
		out.LatencyMS = out.LatencyMS[:len(out.LatencyMS)-1]
	}
	return out
}

// publishStats publishes the router's traffic every StatsInterval until
// ctx ends (never with a negative interval).
func (r *Router) publishStats(ctx context.Context) error {
	if r.cfg.StatsInterval < 0 {
		return nil
	}
	publishTraffic(ctx, r.nc, r.table, r.id, r.cfg.StatsInterval, r.log)
	return nil
}

// PublishStats publishes the client's traffic on P.stats.router.<id>,
// like a router's (the console shows it), every interval until ctx ends;
// a client that wants its traffic seen runs it in a goroutine of its own.
func (c *Client) PublishStats(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = DefaultStatsInterval
	}
	publishTraffic(ctx, c.nc, c.table, uuid.NewString(), every, c.log)
}

// publishTraffic publishes a snapshot of table's traffic every interval
// until ctx ends, an empty one too: readers tell "no traffic" from "no
// router".
func publishTraffic(ctx context.Context, nc *nats.Conn, table *Table, id string, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	subject := table.cfg.Subjects.StatsRouter(id)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if err := publishSnapshot(nc, subject, snapshot(table, id, now, every)); err != nil {
				log.Warn("publish traffic stats", "subject", subject, "err", err)
			}
		}
	}
}

// publishSnapshot publishes s in as many messages as its size takes.
func publishSnapshot(nc *nats.Conn, subject string, s events.RouterStats) error {
	msgs, err := split(s, events.MaxPayload)
	if err != nil {
		return err
	}
	for _, data := range msgs {
		if err := nc.Publish(subject, data); err != nil {
			return err
		}
	}
	return nil
}

// split cuts a snapshot into messages of at most limit bytes, all with
// its ts: as many services as fit in each, and a service whose instances
// do not fit in one message over several, each with the service's calls.
// Snapshots are totals, so a reader that takes the same total twice adds
// nothing, and one that merges by key needs no other rule. A router of
// 100 services of 20 instances publishes about 230 KB, past what a
// reader takes in one message. Each piece is encoded once and the
// messages are put together from them, so every size is exact.
func split(s events.RouterStats, limit int) ([][]byte, error) {
	services := s.Services
	s.Services = nil
	head, err := json.Marshal(s) // {"router":...,"interval_ms":N}: no services
	if err != nil {
		return nil, err
	}
	if len(services) == 0 {
		// No traffic is said too: a reader tells it from no router.
		return [][]byte{head}, nil
	}
	open := append(head[:len(head)-1:len(head)-1], `,"services":[`...)
	const closing = len(`]}`)
	var msgs [][]byte
	var cur []byte // the pieces of the message being filled, comma-joined
	add := func(piece []byte) {
		if cur != nil && len(open)+len(cur)+1+len(piece)+closing > limit {
			msgs = append(msgs, slices.Concat(open, cur, []byte(`]}`)))
			cur = nil
		}
		if cur != nil {
			cur = append(cur, ',')
		}
		cur = append(cur, piece...)
	}
	for _, svc := range services {
		data, err := json.Marshal(svc)
		if err != nil {
			return nil, err
		}
		if len(open)+len(data)+closing <= limit {
			add(data)
			continue
		}
		// Too many instances for one message: its instances in parts,
		// each {"service":...,"calls":{...},"instances":{...}}.
		insts := svc.Instances
		svc.Instances = nil
		bare, err := json.Marshal(svc)
		if err != nil {
			return nil, err
		}
		partOpen := append(bare[:len(bare)-1:len(bare)-1], `,"instances":{`...)
		room := limit - len(open) - closing - len(`}}`)
		var part []byte
		for _, id := range slices.Sorted(maps.Keys(insts)) {
			key, err := json.Marshal(id)
			if err != nil {
				return nil, err
			}
			t, err := json.Marshal(insts[id])
			if err != nil {
				return nil, err
			}
			entry := slices.Concat(key, []byte{':'}, t) // "id":{...}
			if part != nil && len(partOpen)+len(part)+1+len(entry) > room {
				add(slices.Concat(partOpen, part, []byte(`}}`)))
				part = nil
			}
			if part != nil {
				part = append(part, ',')
			}
			part = append(part, entry...)
		}
		add(slices.Concat(partOpen, part, []byte(`}}`)))
	}
	return append(msgs, slices.Concat(open, cur, []byte(`]}`))), nil
}

// snapshot is every service's traffic so far.
func snapshot(table *Table, id string, now time.Time, every time.Duration) events.RouterStats {
	out := events.RouterStats{Router: id, TS: now.UTC(), IntervalMS: every.Milliseconds()}
	for name, v := range *table.views.Load() {
		s := events.ServiceStats{Service: name}
		for _, ep := range v.endpoints {
			s.Calls.Add(ep.stats.traffic.total())
		}
		for id, l := range v.loads {
			if t := l.traffic.total(); t.Requests > 0 {
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
