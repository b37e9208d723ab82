// Package registry is an in-memory view of hail_instances: what discovery
// nodes answer queries from and what routers route by. It is fed by a KV
// watch and, on a discovery node, by the node's own writes as they happen,
// so revisions decide which of two reports of a key is newer.
package registry

import (
	"slices"
	"strings"
	"sync"

	"github.com/hailsd/hail/events"
)

// Registry is safe for concurrent use.
type Registry struct {
	mu      sync.RWMutex
	records map[string]entry
	// gone remembers the last revision of deleted keys, so a watch that
	// delivers an older put after the delete does not bring a record back.
	gone map[string]uint64
	// services holds the services each instance id is registered under
	// (normally one).
	services map[string][]string
}

type entry struct {
	rec events.InstanceRecord
	rev uint64
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{records: map[string]entry{}, gone: map[string]uint64{}, services: map[string][]string{}}
}

// Put stores rec at revision rev unless the registry already holds that
// key at rev or later. It reports whether rec was stored.
func (r *Registry) Put(rec events.InstanceRecord, rev uint64) bool {
	key := rec.Key()
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.records[key]; ok && cur.rev >= rev {
		return false
	}
	if g, ok := r.gone[key]; ok {
		if g >= rev {
			return false
		}
		delete(r.gone, key)
	}
	if _, had := r.records[key]; !had {
		r.services[rec.ID] = append(r.services[rec.ID], rec.Service)
	}
	r.records[key] = entry{rec: rec, rev: rev}
	return true
}

// Delete removes key as of revision rev: a put at rev or earlier arriving
// later is ignored. It reports whether a record was removed.
func (r *Registry) Delete(key string, rev uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, ok := r.records[key]
	if ok && cur.rev > rev {
		return false
	}
	delete(r.records, key)
	r.gone[key] = max(rev, cur.rev)
	if ok {
		svcs := slices.DeleteFunc(r.services[cur.rec.ID], func(s string) bool { return s == cur.rec.Service })
		if len(svcs) == 0 {
			delete(r.services, cur.rec.ID)
		} else {
			r.services[cur.rec.ID] = svcs
		}
	}
	return ok
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
		if e, ok := r.records[events.InstanceKey(s, id)]; ok {
			return e.rec, true
		}
	}
	return events.InstanceRecord{}, false
}

// Forget drops tombstones at or below rev: once a watch has delivered rev,
// no older put for those keys can arrive.
func (r *Registry) Forget(rev uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, g := range r.gone {
		if g <= rev {
			delete(r.gone, k)
		}
	}
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
	e, ok := r.records[key]
	return e.rec, e.rev, ok
}

// Each calls f for every record with its revision, in no order, on a
// snapshot taken first (f may call the registry).
func (r *Registry) Each(f func(rec events.InstanceRecord, rev uint64)) {
	r.mu.RLock()
	all := make([]entry, 0, len(r.records))
	for _, e := range r.records {
		all = append(all, e)
	}
	r.mu.RUnlock()
	for _, e := range all {
		f(e.rec, e.rev)
	}
}

// Len is the number of records.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.records)
}

// Instances returns the records that match q, ordered by key.
func (r *Registry) Instances(q events.InstancesQuery) []events.InstanceRecord {
	r.mu.RLock()
	out := make([]events.InstanceRecord, 0, len(r.records))
	for _, e := range r.records {
		if !q.Match(e.rec) {
			continue
		}
		out = append(out, e.rec)
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b events.InstanceRecord) int { return strings.Compare(a.Key(), b.Key()) })
	return out
}

// Services counts each service's instances by status, ordered by service.
func (r *Registry) Services() []events.ServiceSummary {
	r.mu.RLock()
	byName := map[string]*events.ServiceSummary{}
	for _, e := range r.records {
		s, ok := byName[e.rec.Service]
		if !ok {
			s = &events.ServiceSummary{Service: e.rec.Service}
			byName[e.rec.Service] = s
		}
		s.Instances++
		switch e.rec.Status {
		case events.Passing:
			s.Passing++
		case events.Warning:
			s.Warning++
		case events.Critical:
			s.Critical++
		}
	}
	r.mu.RUnlock()
	out := make([]events.ServiceSummary, 0, len(byName))
	for _, s := range byName {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b events.ServiceSummary) int { return strings.Compare(a.Service, b.Service) })
	return out
}
