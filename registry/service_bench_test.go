package registry_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/registry"
)

// BenchmarkService measures the copy of one service's records, ordered by
// id, that the router builds a service's view from on every change of it.
func BenchmarkService(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			r := registry.New()
			now := time.Now().UTC()
			for i := range n {
				rec := events.InstanceRecord{
					Announce: events.Announce{ID: uuid.Must(uuid.NewV7()).String(), Service: "echo", Weight: 100,
						Endpoints: []events.Endpoint{{Name: "say"}}, Address: "10.0.0.1", Port: events.Port(8000 + i%1000),
						Metadata: map[string]string{"zone": "a"}},
					Status: events.Passing, Node: "node", RegisteredAt: now, UpdatedAt: now,
				}
				r.Put(rec, uint64(i+1))
			}
			if got := r.Service("echo"); !slices.IsSortedFunc(got, func(a, b events.InstanceRecord) int { return strings.Compare(a.ID, b.ID) }) {
				b.Fatal("records not ordered by id")
			}
			b.ReportAllocs()
			for b.Loop() {
				if got := r.Service("echo"); len(got) != n {
					b.Fatalf("got %d records, want %d", len(got), n)
				}
			}
		})
	}
}
