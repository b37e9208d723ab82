package regiontest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/embedded"
)

// Linked are regions under test (PROTOCOL v1.5): one embedded server
// each, JetStream in the region's domain, the buckets made in each,
// joined by leafnode links with hail's denies. The first region accepts
// the others' links; Cut takes another off.
type Linked struct {
	T       testing.TB
	Regions *embedded.Regions
	byName  map[string]*Region

	mu     sync.Mutex
	faults map[string][]error
}

// NewLinked starts the regions named (two or more; "eu", "us" say) and
// stops them when the test ends.
func NewLinked(t testing.TB, names ...string) *Linked {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l := &Linked{T: t, byName: map[string]*Region{}, faults: map[string][]error{}}
	rs, err := embedded.StartRegions(ctx, embedded.RegionsOptions{Names: names, Dir: t.TempDir(), OnFault: l.fault})
	if err != nil {
		t.Fatalf("start regions %v: %v", names, err)
	}
	t.Cleanup(rs.Shutdown)
	l.Regions = rs
	for _, name := range names {
		l.byName[name] = On(t, rs.URL(name))
	}
	return l
}

// Region is the region named.
func (l *Linked) Region(name string) *Region {
	r, ok := l.byName[name]
	if !ok {
		l.T.Fatalf("no region %q", name)
	}
	return r
}

// Cut takes region name off the others until Heal; its own clients stay.
func (l *Linked) Cut(name string) { l.Regions.Cut(name) }

// Heal makes the link of region name again and waits until it is up.
func (l *Linked) Heal(name string) {
	l.T.Helper()
	l.Regions.Heal(name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Regions.WaitLinked(ctx); err != nil {
		l.T.Fatal(err)
	}
}

// Faults are what the link checker of region name found so far.
func (l *Linked) Faults(name string) []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]error(nil), l.faults[name]...)
}

func (l *Linked) fault(region string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.faults[region] = append(l.faults[region], err)
}
