package consul

import (
	"encoding/json"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/hailsd/hail/events"
)

// ConsulIDKey is the metadata key that keeps the ID a service was
// registered under through Consul's API when that ID is not a UUID: every
// answer shows it as the ServiceID.
const ConsulIDKey = "consul_id"

// HailCheck is the CheckID and Name of the check every instance has in
// health answers: hail's heartbeat, as Consul's serfHealth.
const HailCheck = "hail"

// instance is one record as both interfaces answer it. Its JSON is
// encoded when first asked for, so a cold start over a large registry
// does not encode what no client reads. Nothing else changes after
// newInstance.
type instance struct {
	id  string
	rev uint64
	rec events.InstanceRecord
	dc  string
	// tags as registered, for ?tag= and DNS tag queries.
	tags []string
	// status is the record's; passing is true when every check passes.
	status  events.Status
	passing bool
	weight  int
	// address and port as the record has them; ip is valid when the
	// address is an IP.
	address string
	port    int
	ip      netip.Addr

	enc sync.Once
	// catalog is its /v1/catalog/service element, health its
	// /v1/health/service element, checks its /v1/health/checks elements
	// (comma-separated).
	catalog, health, checks []byte
}

// newInstance takes in rec for the datacenter dc.
func newInstance(rec events.InstanceRecord, rev uint64, dc string) *instance {
	in := &instance{
		id: rec.ID, rev: rev, rec: rec, dc: dc, tags: rec.Tags, status: rec.Status, weight: rec.Weight,
		address: rec.Address, port: int(rec.Port),
	}
	if ip, err := netip.ParseAddr(rec.Address); err == nil {
		in.ip = ip.Unmap()
	}
	in.passing = heartbeatStatus(rec) == events.Passing && events.WorstStatus(rec.Checks) == events.Passing
	return in
}

// catalogJSON, healthJSON and checksJSON are its encoded forms.
func (in *instance) catalogJSON() []byte { in.encode(); return in.catalog }
func (in *instance) healthJSON() []byte  { in.encode(); return in.health }
func (in *instance) checksJSON() []byte  { in.encode(); return in.checks }

func (in *instance) encode() {
	in.enc.Do(func() {
		rec := in.rec
		serviceID := in.serviceID()
		nodeName := rec.Hostname
		if nodeName == "" {
			nodeName = rec.ID
		}
		meta := maps.Clone(rec.Metadata)
		if meta == nil {
			meta = map[string]string{}
		}
		if rec.Version != "" {
			meta["hail_version"] = rec.Version
		}
		if rec.AZ != "" {
			meta["hail_az"] = rec.AZ
		}
		meta["hail_weight"] = strconv.Itoa(rec.Weight)
		tags := rec.Tags
		if tags == nil {
			tags = []string{}
		}
		w := weights{Passing: rec.Weight, Warning: 1}
		in.catalog = mustJSON(catalogService{
			ID: rec.ID, Node: nodeName, Address: rec.Address, Datacenter: in.dc,
			TaggedAddresses: map[string]string{}, NodeMeta: map[string]string{},
			ServiceID: serviceID, ServiceName: rec.Service, ServiceAddress: rec.Address,
			ServiceTags: tags, ServiceMeta: meta, ServicePort: int(rec.Port), ServiceWeights: w,
		})
		checks := healthChecks(rec, nodeName, serviceID, tags)
		in.health = mustJSON(serviceEntry{
			Node: node{ID: rec.ID, Node: nodeName, Address: rec.Address, Datacenter: in.dc, TaggedAddresses: map[string]string{}, Meta: map[string]string{}},
			Service: agentService{
				ID: serviceID, Service: rec.Service, Tags: tags, Meta: meta, Port: int(rec.Port), Address: rec.Address, Weights: w,
			},
			Checks: checks,
		})
		parts := make([][]byte, len(checks))
		for i, c := range checks {
			parts[i] = mustJSON(c)
		}
		in.checks = joinJSON(parts)
	})
}

// serviceID is the ID Consul's clients see: the one it was registered
// under through Consul's API, else the instance id.
func (in *instance) serviceID() string {
	if cid := in.rec.Metadata[ConsulIDKey]; cid != "" {
		return cid
	}
	return in.rec.ID
}

// healthChecks are an instance's checks as Consul lists them: the
// heartbeat first, then one per local check.
func healthChecks(rec events.InstanceRecord, nodeName, serviceID string, tags []string) []healthCheck {
	out := make([]healthCheck, 0, 1+len(rec.Checks))
	status, output := hailCheck(rec)
	out = append(out, healthCheck{
		Node: nodeName, CheckID: HailCheck, Name: HailCheck, Status: string(status),
		Output: output, ServiceID: serviceID, ServiceName: rec.Service, ServiceTags: tags,
	})
	// A check registered through Consul's API is named by its CheckID;
	// one from the agent's config or an SDK gets service:<id>:<name>.
	_, api := rec.Metadata[ConsulIDKey]
	for _, c := range rec.Checks {
		checkID := "service:" + serviceID + ":" + c.Name
		if api {
			checkID = c.Name
		}
		out = append(out, healthCheck{
			Node: nodeName, CheckID: checkID, Name: c.Name, Status: string(c.Status),
			Output: c.Output, ServiceID: serviceID, ServiceName: rec.Service, ServiceTags: tags, Type: c.Kind,
		})
	}
	return out
}

// hailCheck is the heartbeat check's status and output. As Consul's
// serfHealth it is passing or critical only (clients take it for
// liveness): an instance that answers its heartbeats reporting warning,
// beyond what its checks say, is alive, so passing, and its output says
// so.
func hailCheck(rec events.InstanceRecord) (events.Status, string) {
	switch heartbeatStatus(rec) {
	case events.Critical:
		return events.Critical, "hail heartbeat: critical"
	case events.Warning:
		return events.Passing, "hail heartbeat: answered, the instance reports warning"
	}
	return events.Passing, "hail heartbeat"
}

// heartbeatStatus is what the record's status says beyond its checks: a
// record worse than its worst check was judged so by its heartbeats.
func heartbeatStatus(rec events.InstanceRecord) events.Status {
	rank := func(s events.Status) int {
		switch s {
		case events.Critical:
			return 2
		case events.Warning:
			return 1
		}
		return 0
	}
	if rank(rec.Status) > rank(events.WorstStatus(rec.Checks)) {
		return rec.Status
	}
	return events.Passing
}

// hasTags reports whether the instance has every tag of want, compared
// without regard to case as Consul does.
func (in *instance) hasTags(want []string) bool {
	for _, t := range want {
		if !slices.ContainsFunc(in.tags, func(have string) bool { return strings.EqualFold(have, t) }) {
			return false
		}
	}
	return true
}

// sameAnswer reports whether a and b (either may be nil) answer alike in
// the catalog, and in health: the fields each answer shows, compared
// without encoding them.
func sameAnswer(a, b *instance) (catalog, health bool) {
	if a == nil || b == nil {
		return a == b, a == b
	}
	x, y := a.rec, b.rec
	catalog = x.ID == y.ID && x.Service == y.Service && x.Hostname == y.Hostname && x.Address == y.Address && x.Port == y.Port &&
		x.Weight == y.Weight && x.Version == y.Version && x.AZ == y.AZ && slices.Equal(x.Tags, y.Tags) && maps.Equal(x.Metadata, y.Metadata) &&
		a.dc == b.dc
	health = catalog && heartbeatStatus(x) == heartbeatStatus(y) && slices.EqualFunc(x.Checks, y.Checks, func(c, d events.CheckResult) bool {
		return c.Name == d.Name && c.Kind == d.Kind && c.Status == d.Status && c.Output == d.Output
	})
	return catalog, health
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only maps of strings, slices and numbers: cannot fail
	}
	return b
}

// joinJSON joins JSON values with commas: the inside of an array.
func joinJSON(parts [][]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p) + 1
	}
	out := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, p...)
	}
	return out
}
