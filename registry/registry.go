package registry

import (
	"container/heap"
	"slices"
	"strings"
	"sync"

	"github.com/hailsd/hail/events"
)

// Registry holds the records of hail_instances by service, each with the
// KV revision it was written at. It is safe for concurrent use.
//
// Two kinds of report reach it: the watch's (Apply: every change, in
// revision order) and a writer's own (Put and Delete: a discovery node's
// writes as they complete, ahead of their echo). Revisions decide which of
// two reports of a key is newer. Because the watch is ordered, a writer's
// report at or below the last revision the watch delivered is already
// known (or superseded) and is refused; so a tombstone, which stops the
// watch's late echo of a put from undoing a delete, is needed only until
// the watch passes its revision, and is then dropped. Tombstones therefore
// stay as few as the writes the watch has not caught up with, however many
// instances come and go.
type Registry struct {
	mu        sync.RWMutex
	byService map[string]map[string]entry // service → id → entry
	count     int
	// services holds the services each instance id is registered under
	// (normally one).
	services map[string][]string
	// watched is the last revision the watch delivered.
	watched uint64
	// gone holds the revision of keys a writer deleted that the watch has
	// not reached yet; expiry orders them by revision for pruning.
	gone   map[string]uint64
	expiry tombstones
}

type entry struct {
	rec events.InstanceRecord
	rev uint64
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{byService: map[string]map[string]entry{}, services: map[string][]string{}, gone: map[string]uint64{}}
}

// Put stores rec at revision rev, a writer's own report of its write. It
// is refused when the registry knows the key at rev or later, when a
// delete at rev or later is pending, or when the watch has already
// delivered rev (what it delivered is as new). It reports whether rec was
// stored.
func (r *Registry) Put(rec events.InstanceRecord, rev uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rev <= r.watched {
		return false
	}
	return r.put(rec, rev)
}

// Delete removes key as of revision rev, a writer's own delete: until the
// watch passes rev, a put at rev or earlier is ignored. It reports whether
// a record was removed.
func (r *Registry) Delete(key string, rev uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	removed, at := r.remove(key, rev)
	if at > r.watched {
		if g, ok := r.gone[key]; !ok || g < at {
			r.gone[key] = at
			heap.Push(&r.expiry, tombstone{key: key, rev: at})
		}
	}
	return removed
}

// Apply takes in one change delivered by the watch, in revision order: a
// put of rec (deleted false) or a delete of key. It reports whether the
// change is news or an echo of what the registry holds (true), or older
// than what it knows (false).
func (r *Registry) Apply(key string, rec events.InstanceRecord, rev uint64, deleted bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Tombstones the watch has now passed go after the entry is applied:
	// the entry itself may be the echo a tombstone at rev refuses.
	defer r.prune()
	r.watched = max(r.watched, rev)
	if deleted {
		if cur, ok := r.get(key); ok && cur.rev > rev {
			return false
		}
		r.remove(key, rev)
		return true // news, or the echo of a writer's own delete
	}
	if cur, ok := r.get(key); ok && cur.rev == rev {
		return true // the echo of a writer's own report
	}
	return r.put(rec, rev)
}

// pass records that the watch delivered rev without a change to apply
// (an invalid entry).
func (r *Registry) pass(rev uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.watched = max(r.watched, rev)
	r.prune()
}

// reset forgets every revision: the bucket was made again and its
// revisions start over. The records stay, at revision 0, until the new
// bucket's entries replace or delete them.
func (r *Registry) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.watched = 0
	clear(r.gone)
	r.expiry = nil
	for _, ids := range r.byService {
		for id, e := range ids {
			ids[id] = entry{rec: e.rec}
		}
	}
}

// Tombstones is the number of deletes the watch has not caught up with.
func (r *Registry) Tombstones() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.gone)
}

// prune drops the tombstones the watch has passed: no older put for their
// keys can arrive any more.
func (r *Registry) prune() {
	for r.expiry.Len() > 0 && r.expiry[0].rev <= r.watched {
		t := heap.Pop(&r.expiry).(tombstone)
		if r.gone[t.key] == t.rev {
			delete(r.gone, t.key)
		}
	}
}

func (r *Registry) get(key string) (entry, bool) {
	service, id, ok := splitKey(key)
	if !ok {
		return entry{}, false
	}
	e, ok := r.byService[service][id]
	return e, ok
}

func (r *Registry) put(rec events.InstanceRecord, rev uint64) bool {
	if g, ok := r.gone[rec.Key()]; ok && g >= rev {
		return false
	}
	ids := r.byService[rec.Service]
	cur, had := ids[rec.ID]
	if had && cur.rev >= rev {
		return false
	}
	if ids == nil {
		ids = map[string]entry{}
		r.byService[rec.Service] = ids
	}
	if !had {
		r.services[rec.ID] = append(r.services[rec.ID], rec.Service)
		r.count++
	}
	ids[rec.ID] = entry{rec: rec, rev: rev}
	return true
}

// remove deletes key unless the registry holds it at a revision above rev;
// it returns whether a record went and the revision the delete counts at.
func (r *Registry) remove(key string, rev uint64) (bool, uint64) {
	service, id, ok := splitKey(key)
	if !ok {
		return false, rev
	}
	ids := r.byService[service]
	cur, had := ids[id]
	if had && cur.rev > rev {
		return false, rev
	}
	if !had {
		return false, rev
	}
	delete(ids, id)
	if len(ids) == 0 {
		delete(r.byService, service)
	}
	r.count--
	svcs := slices.DeleteFunc(r.services[id], func(s string) bool { return s == service })
	if len(svcs) == 0 {
		delete(r.services, id)
	} else {
		r.services[id] = svcs
	}
	return true, max(rev, cur.rev)
}

// splitKey splits a hail_instances key into service and id: the id is the
// last token.
func splitKey(key string) (service, id string, ok bool) {
	i := strings.LastIndexByte(key, '.')
	if i <= 0 || i == len(key)-1 {
		return "", "", false
	}
	return key[:i], key[i+1:], true
}

// OtherService returns a service other than service that id is
// registered under, if any: an id names one instance of one service.
func (r *Registry) OtherService(id, service string) (string, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, s := range r.services[id] {
		if s != service {
			return s, true
		}
	}
	return "", false
}

// ByID returns the record of instance id, under whichever service it is
// registered (the first, should a bad actor have put it under several).
func (r *Registry) ByID(id string) (events.InstanceRecord, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, s := range r.services[id] {
		if e, ok := r.byService[s][id]; ok {
			return e.rec, true
		}
	}
	return events.InstanceRecord{}, false
}

// Get returns the record under key.
func (r *Registry) Get(key string) (events.InstanceRecord, bool) {
	rec, _, ok := r.GetRev(key)
	return rec, ok
}

// GetRev returns the record under key and its revision.
func (r *Registry) GetRev(key string) (events.InstanceRecord, uint64, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.get(key)
	return e.rec, e.rev, ok
}

// Each calls f for every record with its revision, in no order, on a
// snapshot taken first (f may call the registry).
func (r *Registry) Each(f func(rec events.InstanceRecord, rev uint64)) {
	r.mu.RLock()
	all := make([]entry, 0, r.count)
	for _, ids := range r.byService {
		for _, e := range ids {
			all = append(all, e)
		}
	}
	r.mu.RUnlock()
	for _, e := range all {
		f(e.rec, e.rev)
	}
}

// Service returns the records of one service, ordered by id: a copy of that
// service alone, however large the registry.
//
// The ids are sorted, not the records: a record is hundreds of bytes, and
// the router asks this on every change of a service (sorting the records
// was a quarter of its CPU while a region registered).
func (r *Registry) Service(service string) []events.InstanceRecord {
	r.mu.RLock()
	defer r.mu.RUnlock()
	entries := r.byService[service]
	ids := make([]string, 0, len(entries))
	for id := range entries {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]events.InstanceRecord, len(ids))
	for i, id := range ids {
		out[i] = entries[id].rec
	}
	return out
}

// Len is the number of records.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.count
}

// Instances returns the records that match q, ordered by key, paged by
// q.After and q.Limit.
func (r *Registry) Instances(q events.InstancesQuery) []events.InstanceRecord {
	r.mu.RLock()
	var out []events.InstanceRecord
	add := func(ids map[string]entry) {
		for _, e := range ids {
			if q.Match(e.rec) {
				out = append(out, e.rec)
			}
		}
	}
	if q.Service != "" {
		add(r.byService[q.Service])
	} else {
		out = make([]events.InstanceRecord, 0, r.count)
		for _, ids := range r.byService {
			add(ids)
		}
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b events.InstanceRecord) int { return strings.Compare(a.Key(), b.Key()) })
	if q.After != "" {
		i, _ := slices.BinarySearchFunc(out, q.After, func(rec events.InstanceRecord, after string) int {
			if rec.Key() <= after {
				return -1
			}
			return 1
		})
		out = out[i:]
	}
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	if out == nil {
		out = []events.InstanceRecord{}
	}
	return out
}

// Services counts each service's instances by status, ordered by service.
func (r *Registry) Services() []events.ServiceSummary {
	r.mu.RLock()
	out := make([]events.ServiceSummary, 0, len(r.byService))
	for name, ids := range r.byService {
		s := events.ServiceSummary{Service: name, Instances: len(ids)}
		for _, e := range ids {
			switch e.rec.Status {
			case events.Passing:
				s.Passing++
			case events.Warning:
				s.Warning++
			case events.Critical:
				s.Critical++
			}
		}
		out = append(out, s)
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b events.ServiceSummary) int { return strings.Compare(a.Service, b.Service) })
	return out
}

// tombstone is one pending delete, ordered by revision in tombstones.
type tombstone struct {
	key string
	rev uint64
}

// tombstones is a min-heap by revision (container/heap).
type tombstones []tombstone

func (h tombstones) Len() int           { return len(h) }
func (h tombstones) Less(i, j int) bool { return h[i].rev < h[j].rev }
func (h tombstones) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *tombstones) Push(x any)        { *h = append(*h, x.(tombstone)) }
func (h *tombstones) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}
