// Package roles is hail's one table of who may do what on NATS (PROTOCOL
// v1.2 "scoped subjects and roles"): a NATS user per role, each with
// exactly the subjects it publishes and subscribes, and its own reply
// inbox prefix (_INBOX.<role>) so that nobody needs _INBOX.>. The server's
// authorization is generated from it, and its test runs the programs under
// it.
package roles

import (
	"slices"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/events"
)

// Role is one NATS user's permissions.
type Role struct {
	// Name is the user, and the last token of its inbox prefix.
	Name string
	// Publish and Subscribe are the subjects allowed (wildcards as in
	// NATS); nothing else is.
	Publish, Subscribe []string
	// AllowResponses lets it answer requests it received (nats-server's
	// allow_responses).
	AllowResponses bool
}

// InboxPrefix is the role's reply subject prefix (nats.inbox_prefix).
func (r Role) InboxPrefix() string { return "_INBOX." + r.Name }

// kvRead is what reading and watching bucket b needs.
func kvRead(b string) []string {
	s := "KV_" + b
	return []string{"$JS.API.STREAM.INFO." + s, "$JS.API.CONSUMER.CREATE." + s + ".>", "$JS.API.CONSUMER.DELETE." + s + ".>",
		"$JS.API.DIRECT.GET." + s + ".>", "$JS.API.STREAM.MSG.GET." + s, "$JS.FC." + s + ".>"}
}

// micro is what a NATS micro service called name subscribes.
func micro(name string) []string {
	return []string{"$SRV.PING", "$SRV.INFO", "$SRV.STATS", "$SRV.*." + name, "$SRV.*." + name + ".*"}
}

func with(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// Discovery nodes: take announces and deregisters, heartbeat, publish
// health and node events, answer queries, write hail_instances and their
// hail_nodes entries, and create or update hail's buckets and stream (no
// other role may).
func Discovery(s events.Subjects) Role {
	streams := []string{"KV_" + bus.InstancesBucket, "KV_" + bus.NodesBucket, "KV_" + bus.ConfigBucket, bus.EventsStream}
	var admin []string
	for _, st := range streams {
		admin = append(admin, "$JS.API.STREAM.INFO."+st, "$JS.API.STREAM.CREATE."+st, "$JS.API.STREAM.UPDATE."+st)
	}
	r := Role{Name: "discovery", AllowResponses: true}
	r.Publish = with([]string{s.Heartbeat(">"), s.HealthAll(), s.NodeEventAll(), s.Discover(), "$JS.API.INFO",
		"$KV." + bus.InstancesBucket + ".>", "$KV." + bus.NodesBucket + ".>"},
		admin, kvRead(bus.InstancesBucket), kvRead(bus.NodesBucket))
	r.Subscribe = with([]string{s.AnnounceAll(), s.DeregisterAll(), s.DiscoveryServices(), s.DiscoveryInstances(), s.DiscoveryRTT(),
		r.InboxPrefix() + ".>"}, micro("hail-discovery"), disconnects)
	return r
}

// disconnects is what discovery hears the servers' disconnect advisories
// on (PROTOCOL v1.4), imported into hail's account.
var disconnects = []string{events.DisconnectAll}

// Router: routed requests in, instances' subjects out, the registry and
// routes read, health events heard, its traffic published.
func Router(s events.Subjects) Role {
	r := Role{Name: "router", AllowResponses: true}
	r.Publish = with([]string{s.Inst("*", ">"), s.StatsRouter("*")}, kvRead(bus.InstancesBucket), kvRead(bus.ConfigBucket),
		[]string{"$JS.API.STREAM.INFO." + bus.EventsStream, "$JS.API.STREAM.INFO.KV_" + bus.NodesBucket})
	r.Subscribe = with([]string{s.RouteAll(), s.HealthAll(), r.InboxPrefix() + ".>"}, micro("hail-router"))
	return r
}

// Caller: routed requests and the two registry queries.
func Caller(s events.Subjects) Role {
	r := Role{Name: "caller"}
	r.Publish = []string{s.RouteAll(), s.DiscoveryServices(), s.DiscoveryInstances()}
	r.Subscribe = []string{r.InboxPrefix() + ".>"}
	return r
}

// Service is svc-<service>: instances and agents of one service announce
// and deregister it alone, answer heartbeats and requests.
func Service(s events.Subjects, service string) Role {
	r := Role{Name: "svc-" + service, AllowResponses: true}
	r.Publish = []string{s.Announce(service), s.Deregister(service)}
	// Unscoped instances are heartbeated and reached on subjects that do
	// not name their service (hail.hb.<id>, hail.inst.<id>.<ep>): a
	// credential cannot be confined to one service there; scoped subjects
	// (PROTOCOL v1.2: hail.hb.<service>.<id>,
	// hail.inst.<service>.<id>.<ep>) are what can, and those of other
	// services are refused (they have more tokens than the unscoped
	// patterns match).
	r.Subscribe = with([]string{s.Heartbeat("*"), s.Inst("*", "*"), s.HeartbeatOf(service, "*", true), s.InstOf(service, "*", "*", true),
		s.Svc(service, "*"), s.Discover(), r.InboxPrefix() + ".>"},
		micro(bus.MicroName(service)))
	return r
}

// ServiceScoped is svc-<service> for a region whose instances all
// announce scoped (PROTOCOL v1.2): without the unscoped hail.hb.* and
// hail.inst.*.*, whose instances a credential cannot be confined to, so
// it may hear only its own service's heartbeats and requests.
func ServiceScoped(s events.Subjects, service string) Role {
	r := Service(s, service)
	unscoped := map[string]bool{s.Heartbeat("*"): true, s.Inst("*", "*"): true}
	r.Subscribe = slices.DeleteFunc(r.Subscribe, func(subject string) bool { return unscoped[subject] })
	return r
}

// Console: reads the three buckets and HAIL_EVENTS, writes routes only,
// hears health, node and traffic events, asks the discovery queries.
func Console(s events.Subjects) Role {
	r := Role{Name: "console"}
	ev := bus.EventsStream
	r.Publish = with([]string{"$KV." + bus.ConfigBucket + ".route.>", s.DiscoveryServices(), s.DiscoveryInstances(), s.DiscoveryRTT(),
		"$JS.API.STREAM.INFO." + ev, "$JS.API.CONSUMER.CREATE." + ev + ".>", "$JS.API.CONSUMER.DELETE." + ev + ".>",
		"$JS.API.CONSUMER.INFO." + ev + ".>", "$JS.API.CONSUMER.MSG.NEXT." + ev + ".>", "$JS.FC." + ev + ".>"},
		kvRead(bus.InstancesBucket), kvRead(bus.NodesBucket), kvRead(bus.ConfigBucket))
	r.Subscribe = []string{s.HealthAll(), s.NodeEventAll(), s.StatsAll(), r.InboxPrefix() + ".>"}
	return r
}

// All are the roles of a region whose services are services.
func All(s events.Subjects, services ...string) []Role {
	out := []Role{Discovery(s), Router(s), Console(s), Caller(s)}
	for _, svc := range services {
		out = append(out, Service(s, svc))
	}
	return out
}

// AllScoped are the roles of a region whose services' instances all
// announce scoped.
func AllScoped(s events.Subjects, services ...string) []Role {
	out := []Role{Discovery(s), Router(s), Console(s), Caller(s)}
	for _, svc := range services {
		out = append(out, ServiceScoped(s, svc))
	}
	return out
}
