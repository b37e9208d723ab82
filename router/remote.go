package router

import (
	"cmp"
	"math"
	"slices"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/registry"
)

// Routing across regions (PROTOCOL v1.5): a service goes to instances of
// the router's own region while one of them can take the request, and
// only when none can (none registered, all critical, drained, ejected or
// already tried) to another region's, nearest first, with the route's
// strategy within that region. Home is tried first on every pick, so
// traffic comes back as soon as an instance at home passes.

// failover is an endpoint's picker when other regions serve it too.
type failover struct {
	home    Picker // nil: no instance at home may take requests
	regions []Picker
}

func (f *failover) Pick(key string, avoid func(*Target) bool) (*Target, error) {
	if f.home != nil {
		if t, err := f.home.Pick(key, avoid); err == nil {
			return t, nil
		}
	}
	for _, p := range f.regions {
		if t, err := p.Pick(key, avoid); err == nil {
			return t, nil
		}
	}
	return nil, ErrNoInstance
}

// regionService is what the table keeps of a service's instances in one
// other region: as a service's own, with its own state, so that ejection
// bounds and hash loads count within the region.
type regionService struct {
	statuses map[string]events.Status
	loads    map[string]*Load
	state    *serviceState
}

func (s *service) region(name string, t *Table) *regionService {
	if s.regions == nil {
		s.regions = map[string]*regionService{}
	}
	rs := s.regions[name]
	if rs == nil {
		rs = &regionService{statuses: map[string]events.Status{}, loads: map[string]*Load{}, state: newServiceState(t.cfg.Ejection, t.cfg.Route)}
		s.regions[name] = rs
	}
	return rs
}

// knownAbroad: hail_remote holds records of the service, whether their
// regions are fresh or not (a stale one may turn fresh).
func (s *service) knownAbroad() bool {
	for _, rs := range s.regions {
		if len(rs.statuses) > 0 {
			return true
		}
	}
	return false
}

// regionRecords are a service's records in one other region.
type regionRecords struct {
	region string
	recs   []events.InstanceRecord
}

// abroad returns the service's records in the other regions that may be
// routed to (not stale), nearest first: the regions the router names in
// its order, then the others by the round-trip time measured on their
// instances (unmeasured last), then by name.
func (t *Table) abroad(service string) []regionRecords {
	if t.remote == nil {
		return nil
	}
	var out []regionRecords
	for _, region := range t.remote.Regions() {
		if t.remote.Stale(region) {
			continue
		}
		if recs := t.remote.Service(region, service); len(recs) > 0 {
			out = append(out, regionRecords{region, recs})
		}
	}
	if len(out) < 2 {
		return out
	}
	rank := func(region string) int {
		if i := slices.Index(t.cfg.RemoteRegions, region); i >= 0 {
			return i
		}
		return len(t.cfg.RemoteRegions)
	}
	s := t.services[service]
	slices.SortStableFunc(out, func(a, b regionRecords) int {
		return cmp.Or(cmp.Compare(rank(a.region), rank(b.region)), cmp.Compare(s.rtt(a.region), s.rtt(b.region)),
			cmp.Compare(a.region, b.region))
	})
	return out
}

// rtt is the lowest latency measured on the service's instances in
// region (+Inf when none is measured yet).
func (s *service) rtt(region string) float64 {
	best := math.Inf(1)
	if s == nil || s.regions[region] == nil {
		return best
	}
	for _, l := range s.regions[region].loads {
		if l.stamp.Load() != 0 {
			best = min(best, l.latency())
		}
	}
	return best
}

// applyRemote takes in a change to hail_remote: the service is rebuilt;
// a region turning stale or fresh rebuilds the services it holds.
func (t *Table) applyRemote(c registry.RemoteChange) {
	if c.Freshness {
		for name, s := range t.services {
			if rs := s.regions[c.Region]; rs != nil && len(rs.statuses) > 0 {
				t.dirty[name] = true
			}
		}
		return
	}
	if c.Deleted {
		s := t.services[c.Service]
		if s == nil || s.regions[c.Region] == nil {
			return
		}
		rs := s.regions[c.Region]
		delete(rs.statuses, c.ID)
		if l := rs.loads[c.ID]; l != nil {
			rs.state.lift(l)
			delete(rs.loads, c.ID)
		}
		t.dirty[c.Service] = true
		return
	}
	s := t.service(c.Service)
	rs := s.region(c.Region, t)
	prev, had := rs.statuses[c.ID]
	rs.statuses[c.ID] = c.Record.Status
	if c.Record.Status == events.Passing && (!had || prev != events.Passing) {
		if l := rs.loads[c.ID]; l != nil {
			rs.state.lift(l)
			l.resetStreak()
		}
	}
	t.dirty[c.Service] = true
}

// logAway logs a service leaving home for other regions, and coming back.
func (t *Table) logAway(s *service, home, away int, abroad []regionRecords) {
	if (home == 0 && away > 0) == s.away {
		return
	}
	s.away = !s.away
	if !s.away && home == 0 {
		return // nothing anywhere: the 503s say so
	}
	if s.away {
		regions := make([]string, len(abroad))
		for i, a := range abroad {
			regions[i] = a.region
		}
		t.log.Warn("no instance at home can take requests: routing to other regions", "service", s.name, "regions", regions)
		return
	}
	t.log.Info("routing at home again", "service", s.name)
}
