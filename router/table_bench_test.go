package router

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/registry"
)

// BenchmarkTableUpdateAt50k measures what one health change costs the
// routing table when the region holds 50,000 instances (500 services of
// 100): the registry takes the change, the table rebuilds the one service
// from that service's records, and the new views are published. It
// reports the p99 of 1,000 such updates.
//
//	go test -run '^$' -bench TableUpdateAt50k -benchtime 1x ./router/
func BenchmarkTableUpdateAt50k(b *testing.B) {
	const services, each = 500, 100
	t, err := NewTable(nil, TableConfig{})
	if err != nil {
		b.Fatal(err)
	}
	t.reg = registry.NewFollower(nil, registry.FollowConfig{})
	var recs []events.InstanceRecord
	rev := uint64(0)
	for s := range services {
		for range each {
			rec := events.InstanceRecord{Announce: events.Announce{ID: uuid.NewString(), Service: fmt.Sprintf("svc-%03d", s),
				Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100}, Status: events.Passing}
			rev++
			t.reg.Apply(rec.Key(), rec, rev, false)
			t.applyChange(registry.Change{Key: rec.Key(), Service: rec.Service, ID: rec.ID, Record: rec, Rev: rev})
			recs = append(recs, rec)
		}
	}
	t.publish()
	for range b.N {
		took := make([]time.Duration, 0, 1000)
		for i := range 1000 {
			rec := recs[(i*7919)%len(recs)]
			if rec.Status == events.Passing {
				rec.Status = events.Critical
			} else {
				rec.Status = events.Passing
			}
			recs[(i*7919)%len(recs)] = rec
			rev++
			start := time.Now()
			t.reg.Apply(rec.Key(), rec, rev, false)
			t.applyChange(registry.Change{Key: rec.Key(), Service: rec.Service, ID: rec.ID, Record: rec, Rev: rev})
			t.publish()
			took = append(took, time.Since(start))
		}
		slices.Sort(took)
		b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
		if v := t.View(recs[0].Service); v == nil {
			b.Fatal("no view")
		}
	}
}
