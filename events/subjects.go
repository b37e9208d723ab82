package events

import (
	"strings"
)

// DefaultPrefix is the subject prefix P of PROTOCOL.md.
const DefaultPrefix = "hail"

// Subjects builds and parses the subjects of PROTOCOL.md under one prefix.
// The zero value uses DefaultPrefix.
type Subjects struct {
	Prefix string
}

// NewSubjects returns Subjects for prefix after checking that the prefix is
// made of plain subject tokens (no wildcards, no empty tokens).
func NewSubjects(prefix string) (Subjects, error) {
	if prefix == "" {
		return Subjects{}, invalid("subject prefix is empty")
	}
	for tok := range strings.SplitSeq(prefix, ".") {
		if err := ValidateEndpoint(tok); err != nil {
			return Subjects{}, invalid("subject prefix %q: each token must be A-Z a-z 0-9 _ -", prefix)
		}
	}
	return Subjects{Prefix: prefix}, nil
}

func (s Subjects) p() string {
	if s.Prefix == "" {
		return DefaultPrefix
	}
	return s.Prefix
}

// Announce is P.announce.<service>.
func (s Subjects) Announce(service string) string { return s.p() + ".announce." + service }

// AnnounceAll matches every announce.
func (s Subjects) AnnounceAll() string { return s.p() + ".announce.>" }

// Deregister is P.deregister.<service>.
func (s Subjects) Deregister(service string) string { return s.p() + ".deregister." + service }

// DeregisterAll matches every deregister.
func (s Subjects) DeregisterAll() string { return s.p() + ".deregister.>" }

// Heartbeat is P.hb.<id>.
func (s Subjects) Heartbeat(id string) string { return s.p() + ".hb." + id }

// HeartbeatTarget is what follows P.hb. for an instance: <id>, or
// <service>.<id> when it announced scoped (v1.2). The id stays the last
// token.
func HeartbeatTarget(service, id string, scoped bool) string {
	if scoped {
		return service + "." + id
	}
	return id
}

// HeartbeatOf is the subject an instance is heartbeated on.
func (s Subjects) HeartbeatOf(service, id string, scoped bool) string {
	return s.p() + ".hb." + HeartbeatTarget(service, id, scoped)
}

// Health is P.health.<service>.<id>.
func (s Subjects) Health(service, id string) string { return s.p() + ".health." + service + "." + id }

// HealthAll matches every health event.
func (s Subjects) HealthAll() string { return s.p() + ".health.>" }

// Discover is P.discover.
func (s Subjects) Discover() string { return s.p() + ".discover" }

// Svc is P.svc.<service>.<endpoint>, served by the queue group QueueGroup(service).
func (s Subjects) Svc(service, endpoint string) string {
	return s.p() + ".svc." + service + "." + endpoint
}

// QueueGroup is the queue group every instance of service joins.
func (s Subjects) QueueGroup(service string) string { return s.p() + "." + service }

// Inst is P.inst.<id>.<endpoint>.
func (s Subjects) Inst(id, endpoint string) string { return s.p() + ".inst." + id + "." + endpoint }

// InstOf is the subject an instance's endpoint is reached on:
// P.inst.<id>.<endpoint>, or P.inst.<service>.<id>.<endpoint> when it
// announced scoped (v1.2).
func (s Subjects) InstOf(service, id, endpoint string, scoped bool) string {
	if scoped {
		return s.p() + ".inst." + service + "." + id + "." + endpoint
	}
	return s.Inst(id, endpoint)
}

// Route is P.route.<service>.<endpoint>.
func (s Subjects) Route(service, endpoint string) string {
	return s.p() + ".route." + service + "." + endpoint
}

// RouteAll matches every routed request.
func (s Subjects) RouteAll() string { return s.p() + ".route.>" }

// DiscoveryServices is P.discovery.services.
func (s Subjects) DiscoveryServices() string { return s.p() + ".discovery.services" }

// DiscoveryInstances is P.discovery.instances.
func (s Subjects) DiscoveryInstances() string { return s.p() + ".discovery.instances" }

// DiscoveryRTT is P.discovery.rtt: every node (no queue group) answers
// with the last heartbeat round-trip time of each instance it owns.
func (s Subjects) DiscoveryRTT() string { return s.p() + ".discovery.rtt" }

// DiscoveryQueue is the queue group the discovery nodes share, so that one
// node handles each announce, deregister and query.
func (s Subjects) DiscoveryQueue() string { return s.p() + ".discovery" }

// NodeEvent is where discovery node id says what it is doing (events.NodeEvent).
func (s Subjects) NodeEvent(id string) string { return s.p() + ".node." + id }

// NodeEventAll matches every node event.
func (s Subjects) NodeEventAll() string { return s.p() + ".node.>" }

// StatsRouter is where router id publishes its traffic snapshots.
func (s Subjects) StatsRouter(id string) string { return s.p() + ".stats.router." + id }

// StatsAll matches every traffic snapshot.
func (s Subjects) StatsAll() string { return s.p() + ".stats.>" }

// RouterQueue is the queue group routers share on RouteAll.
func (s Subjects) RouterQueue() string { return s.p() + ".router" }
