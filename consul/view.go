package consul

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/registry"
)

// service is one service's answers at one moment. Nothing in it changes
// once it is published.
type service struct {
	name string
	// catalogIndex is the revision of the last change that altered the
	// catalog answer; healthIndex that of the health answers (which show
	// the catalog's fields too, so it is never behind catalogIndex).
	catalogIndex uint64
	healthIndex  uint64
	// insts is ordered by id.
	insts []*instance
	// changed is closed when a snapshot with another index replaces this
	// one; snapshots that differ only in revisions share it.
	changed chan struct{}
	// whole caches the unfiltered answer of each read (by perService
	// index), built by the first request that needs it: a service of
	// 10,000 instances is then one write of bytes already made.
	whole [3]struct {
		once sync.Once
		body []byte
	}
	// serving caches the instances DNS answers with (passing and
	// warning, passing alone), by id, built when first asked for.
	serving struct {
		once     sync.Once
		any, top []*instance
		// addrs are the same instances' IP addresses, packed for the
		// wire ([onlyPassing][ipv6]): an A or AAAA answer is copied out
		// of them, never built record by record.
		addrs [2][2][]byte
	}
}

// served returns the instances DNS answers with: those with an address
// that take traffic, passing or (unless onlyPassing) warning.
func (s *service) served(onlyPassing bool) []*instance {
	c := &s.serving
	c.once.Do(func() {
		for _, in := range s.insts {
			if in.address == "" || in.weight <= 0 {
				continue
			}
			switch in.status {
			case events.Passing:
				c.top = append(c.top, in)
				c.any = append(c.any, in)
			case events.Warning:
				c.any = append(c.any, in)
			}
		}
		for i, ins := range [][]*instance{c.any, c.top} {
			for _, in := range ins {
				switch {
				case in.ip.Is4():
					c.addrs[i][0] = append(c.addrs[i][0], in.ip.AsSlice()...)
				case in.ip.Is6():
					c.addrs[i][1] = append(c.addrs[i][1], in.ip.AsSlice()...)
				}
			}
		}
	})
	if onlyPassing {
		return c.top
	}
	return c.any
}

// servedAddrs are the IPv4 (v6: IPv6) addresses of the instances served
// (see served), packed 4 (16) bytes each.
func (s *service) servedAddrs(onlyPassing, v6 bool) []byte {
	s.served(onlyPassing)
	return s.serving.addrs[b2i(onlyPassing)][b2i(v6)]
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// serviceList is /v1/catalog/services at one moment.
type serviceList struct {
	json    []byte
	index   uint64
	changed chan struct{}
}

// slot holds the current snapshot of one service name.
type slot struct{ p atomic.Pointer[service] }

// View is the read model both interfaces answer from: a snapshot per
// service, rebuilt from a registry follower's changes on the follower's
// goroutine and read without locks.
type View struct {
	f  atomic.Pointer[registry.Follower]
	dc string

	// mu orders the builder (the follower's changes, the first load);
	// readers never take it.
	mu   sync.Mutex
	tags map[string][]string // service → its tags, as listed
	// tagCount counts each service's instances by tag, so that a change
	// of one instance updates the list without a pass over the service.
	tagCount map[string]map[string]int
	slots    sync.Map // service name → *slot; a name once seen stays
	list     atomic.Pointer[serviceList]
	ready    chan struct{}
	// seen is the last revision taken in.
	seen atomic.Uint64
	// loaded is set by load: changes before it are in what load reads.
	loaded bool
}

// NewView makes a view for datacenter dc (the region); Run fills it from
// a follower and keeps it current. Until it is ready, the interfaces
// answer that the registry is not loaded.
func NewView(dc string) *View {
	v := &View{dc: dc, tags: map[string][]string{}, tagCount: map[string]map[string]int{}, ready: make(chan struct{})}
	v.list.Store(&serviceList{json: []byte("{}"), index: 1, changed: make(chan struct{})})
	return v
}

// Ready is closed once the view holds the registry as loaded.
func (v *View) Ready() <-chan struct{} { return v.ready }

// Datacenter is the region the view answers for.
func (v *View) Datacenter() string { return v.dc }

// Run follows f until ctx ends; f is run by its owner (a program shares
// one follower of hail_instances). Run once.
func (v *View) Run(ctx context.Context, f *registry.Follower) error {
	v.f.Store(f)
	cancel := f.Subscribe(v.apply)
	defer cancel()
	select {
	case <-ctx.Done():
		return nil
	case <-f.Ready():
	}
	v.load(f)
	close(v.ready)
	<-ctx.Done()
	return nil
}

// byID returns the record of instance id.
func (v *View) byID(id string) (events.InstanceRecord, bool) {
	f := v.f.Load()
	if f == nil {
		return events.InstanceRecord{}, false
	}
	return f.ByID(id)
}

// Revision is the last registry revision the view has taken in.
func (v *View) Revision() uint64 { return v.seen.Load() }

// service returns the current snapshot of name, nil for a name never seen.
func (v *View) service(name string) *service {
	s, ok := v.slots.Load(name)
	if !ok {
		return nil
	}
	return s.(*slot).p.Load()
}

// serviceList returns the current list of services.
func (v *View) serviceList() *serviceList { return v.list.Load() }

// load takes in the registry as it is, over whatever changes came first
// (a change seen both ways is kept at its newest revision).
func (v *View) load(f *registry.Follower) {
	byService := map[string]map[string]*instance{}
	f.Each(func(rec events.InstanceRecord, rev uint64) {
		ids := byService[rec.Service]
		if ids == nil {
			ids = map[string]*instance{}
			byService[rec.Service] = ids
		}
		ids[rec.ID] = newInstance(rec, rev, v.dc)
	})
	v.mu.Lock()
	defer v.mu.Unlock()
	v.loaded = true
	var top uint64
	defer func() { v.seen.Store(max(v.seen.Load(), top)) }()
	for name, ids := range byService {
		old := v.service(name)
		if old != nil {
			for _, in := range old.insts {
				if cur, ok := ids[in.id]; !ok || cur.rev < in.rev {
					ids[in.id] = in
				}
			}
		}
		insts := slices.SortedFunc(maps.Values(ids), func(a, b *instance) int { return strings.Compare(a.id, b.id) })
		var idx uint64
		for _, in := range insts {
			idx = max(idx, in.rev)
		}
		if old != nil {
			idx = max(idx, old.healthIndex)
		}
		top = max(top, idx)
		v.publish(old, &service{name: name, catalogIndex: idx, healthIndex: idx, insts: insts, changed: make(chan struct{})})
		counts := map[string]int{}
		for _, in := range insts {
			for _, t := range uniqueTags(in) {
				counts[t]++
			}
		}
		v.tagCount[name] = counts
		v.tags[name] = sortedKeys(counts)
	}
	v.publishList(top)
}

// apply takes in one change of the registry.
func (v *View) apply(c registry.Change) {
	v.mu.Lock()
	defer v.mu.Unlock()
	defer v.seen.Store(max(v.seen.Load(), c.Rev))
	if !v.loaded {
		// The follower's own first load: the registry holds the change
		// before it is told, so load reads it with the rest, once.
		return
	}
	old := v.service(c.Service)
	var insts []*instance
	i, found := -1, false
	if old != nil {
		insts = old.insts
		i, found = slices.BinarySearchFunc(insts, c.ID, func(in *instance, id string) int { return strings.Compare(in.id, id) })
		if found && insts[i].rev >= c.Rev {
			return // the load already holds this or a newer one
		}
	}
	var prev, next *instance
	if found {
		prev = insts[i]
	}
	if !c.Deleted {
		next = newInstance(c.Record, c.Rev, v.dc)
	}
	if prev == nil && next == nil {
		return
	}
	switch {
	case found && next != nil:
		insts = slices.Clone(insts)
		insts[i] = next
	case found:
		insts = slices.Delete(slices.Clone(insts), i, i+1)
	default:
		if i < 0 {
			i = 0
		}
		insts = slices.Insert(slices.Clip(insts), i, next)
	}
	s := &service{name: c.Service, insts: insts}
	if old != nil {
		s.catalogIndex, s.healthIndex, s.changed = old.catalogIndex, old.healthIndex, old.changed
	}
	sameCatalog, sameHealth := sameAnswer(prev, next)
	if !sameCatalog {
		s.catalogIndex = c.Rev
	}
	if !sameHealth {
		s.healthIndex = c.Rev
	}
	if !sameCatalog || !sameHealth || old == nil {
		s.changed = make(chan struct{})
	}
	v.publish(old, s)
	if sameCatalog {
		return
	}
	counts := v.tagCount[c.Service]
	if counts == nil {
		counts = map[string]int{}
		v.tagCount[c.Service] = counts
	}
	tagsChanged := false
	if prev != nil {
		for _, t := range uniqueTags(prev) {
			if counts[t]--; counts[t] == 0 {
				delete(counts, t)
				tagsChanged = true
			}
		}
	}
	if next != nil {
		for _, t := range uniqueTags(next) {
			if counts[t]++; counts[t] == 1 {
				tagsChanged = true
			}
		}
	}
	_, listed := v.tags[c.Service]
	switch {
	case len(insts) == 0:
		if !listed {
			return
		}
		delete(v.tags, c.Service)
		delete(v.tagCount, c.Service)
	case !listed || tagsChanged:
		v.tags[c.Service] = sortedKeys(counts)
	default:
		return
	}
	v.publishList(c.Rev)
}

// publish swaps s in for old and wakes old's waiters if s is another
// answer.
func (v *View) publish(old, s *service) {
	sl, _ := v.slots.LoadOrStore(s.name, &slot{})
	sl.(*slot).p.Store(s)
	if old != nil && old.changed != s.changed {
		close(old.changed)
	}
}

// publishList rebuilds /v1/catalog/services as changed at rev.
func (v *View) publishList(rev uint64) {
	old := v.list.Load()
	next := &serviceList{json: mustJSON(v.tags), index: max(rev, old.index), changed: make(chan struct{})}
	v.list.Store(next)
	close(old.changed)
}

// uniqueTags are in's tags, each once.
func uniqueTags(in *instance) []string {
	if len(in.tags) < 2 {
		return in.tags
	}
	return slices.Compact(slices.Sorted(slices.Values(in.tags)))
}

func sortedKeys(m map[string]int) []string {
	out := slices.Sorted(maps.Keys(m))
	if out == nil {
		out = []string{}
	}
	return out
}
