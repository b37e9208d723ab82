package router

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hailsd/hail/events"
)

// A snapshot too big for one message is published as several, each under
// the limit, each a valid snapshot with the same ts, and merging them by
// key gives the snapshot back.
func TestSplitSnapshot(t *testing.T) {
	traffic := func(n int64) events.Traffic {
		return events.Traffic{Requests: n, Errors: n / 10, LatencyMS: []int64{n, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}}
	}
	services := func(n, each int) []events.ServiceStats {
		var out []events.ServiceStats
		for s := range n {
			svc := events.ServiceStats{Service: fmt.Sprintf("svc-%03d", s), Calls: traffic(int64(s) * 100), Instances: map[string]events.Traffic{}}
			for i := range each {
				svc.Instances[uuid.NewString()] = traffic(int64(s*1000 + i))
			}
			out = append(out, svc)
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		services []events.ServiceStats
		limit    int
		want     int // messages
	}{
		{"no traffic", nil, events.MaxPayload, 1},
		{"small", services(3, 2), events.MaxPayload, 1},
		{"100 services of 20", services(100, 20), events.MaxPayload, 4},
		{"one service of 2,000", services(1, 2000), events.MaxPayload, 4},
		{"many small at a small limit", services(40, 1), 1024, 14},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := events.RouterStats{Router: uuid.NewString(), TS: time.Now().UTC(), IntervalMS: 1000, Services: tc.services}
			msgs, err := split(in, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) < tc.want {
				t.Errorf("%d messages, want at least %d", len(msgs), tc.want)
			}
			calls := map[string]events.Traffic{}
			insts := map[string]map[string]events.Traffic{}
			for i, data := range msgs {
				if len(data) > tc.limit {
					t.Errorf("message %d is %d bytes, over %d", i, len(data), tc.limit)
				}
				var got events.RouterStats
				if err := events.Decode("router stats", data, &got); err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if got.Router != in.Router || !got.TS.Equal(in.TS) || got.IntervalMS != in.IntervalMS {
					t.Errorf("message %d: head %+v", i, got)
				}
				for _, s := range got.Services {
					if c, ok := calls[s.Service]; ok && !reflect.DeepEqual(c, s.Calls) {
						t.Errorf("%s: calls differ between parts", s.Service)
					}
					calls[s.Service] = s.Calls
					if insts[s.Service] == nil {
						insts[s.Service] = map[string]events.Traffic{}
					}
					for id, tr := range s.Instances {
						if _, dup := insts[s.Service][id]; dup {
							t.Errorf("instance %s in two messages", id)
						}
						insts[s.Service][id] = tr
					}
				}
			}
			if len(calls) != len(tc.services) {
				t.Fatalf("%d services merged, want %d", len(calls), len(tc.services))
			}
			for _, s := range tc.services {
				if !reflect.DeepEqual(calls[s.Service], s.Calls) || !reflect.DeepEqual(insts[s.Service], s.Instances) {
					t.Errorf("%s does not merge back", s.Service)
				}
			}
		})
	}
}
