// Package roles is hail's one table of who may do what on NATS (PROTOCOL
// v1.2 "scoped subjects and roles"): a NATS user per role, each with
// exactly the subjects it publishes and subscribes, and its own reply
// inbox prefix (_INBOX.<role>) so that nobody needs _INBOX.>. The server's
// authorization is generated from it, and its test runs the programs under
// it.
package roles

import (
	"slices"
	"strings"

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
	// DenySubscribe are refused although Subscribe allows them (see
	// confine). There is no publish counterpart: a published subject is
	// literal, so a ">" in it is one token, delivered only to what may
	// hear a subject of that many tokens anyway.
	DenySubscribe []string
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

// confine denies what a subscription with a literal ">" reaches beyond
// r's rights. nats-server checks a subscription's subject against the
// allow list as if it were a message subject, so a "*" allowed as the
// last token lets in a ">" there: allowed hail.hb.echo.*, a subscription
// hail.hb.echo.> would hear every deeper subject, such as service
// echo.admin's hail.hb.echo.admin.<id>. Denying <pattern>.> refuses no
// subscription of the allowed depth (the deny has a token more), while
// one that collides with it makes the server filter each message at
// delivery, dropping the deeper ones.
func confine(r Role) Role {
	for _, s := range r.Subscribe {
		if s == "*" || strings.HasSuffix(s, ".*") {
			r.DenySubscribe = append(r.DenySubscribe, s+".>")
		}
	}
	return r
}

// Discovery nodes: take announces and deregisters, heartbeat, publish
// health and node events, answer queries, write hail_instances and their
// hail_nodes entries, and create or update hail's buckets and stream (no
// other role may).
func Discovery(s events.Subjects) Role {
	streams := []string{"KV_" + bus.InstancesBucket, "KV_" + bus.NodesBucket, "KV_" + bus.ConfigBucket, bus.EventsStream, "KV_" + bus.RemoteBucket}
	var admin []string
	for _, st := range streams {
		admin = append(admin, "$JS.API.STREAM.INFO."+st, "$JS.API.STREAM.CREATE."+st, "$JS.API.STREAM.UPDATE."+st)
	}
	r := Role{Name: events.RoleDiscovery, AllowResponses: true}
	r.Publish = with([]string{s.Heartbeat(">"), s.HealthAll(), s.NodeEventAll(), s.Discover(), "$JS.API.INFO",
		"$KV." + bus.InstancesBucket + ".>", "$KV." + bus.NodesBucket + ".>"},
		admin, kvRead(bus.InstancesBucket), kvRead(bus.NodesBucket),
		// hail_remote (v1.5): a region query reads it; a region no longer
		// remote is purged from it.
		kvRead(bus.RemoteBucket), []string{"$JS.API.STREAM.PURGE.KV_" + bus.RemoteBucket})
	r.Subscribe = with([]string{s.AnnounceAll(), s.DeregisterAll(), s.DiscoveryServices(), s.DiscoveryInstances(), s.DiscoveryRTT(),
		r.InboxPrefix() + ".>"}, micro("hail-discovery"), disconnects)
	return confine(r)
}

// disconnects is what discovery hears the servers' disconnect advisories,
// shutdowns and lame ducks on (PROTOCOL v1.4), and their connect
// advisories (an identity's live connections, v1.6), imported into
// hail's account.
var disconnects = events.ServerEvents

// Router: routed requests in, instances' subjects out, the registry,
// the other regions' (hail_remote) and routes read, health events heard, its traffic published.
func Router(s events.Subjects) Role {
	r := Role{Name: events.RoleRouter, AllowResponses: true}
	r.Publish = with([]string{s.Inst("*", ">"), s.StatsRouter("*")}, kvRead(bus.InstancesBucket), kvRead(bus.ConfigBucket), kvRead(bus.RemoteBucket),
		[]string{"$JS.API.STREAM.INFO." + bus.EventsStream, "$JS.API.STREAM.INFO.KV_" + bus.NodesBucket})
	r.Subscribe = with([]string{s.RouteAll(), s.HealthAll(), r.InboxPrefix() + ".>"}, micro("hail-router"))
	return confine(r)
}

// Caller: routed requests and the two registry queries.
func Caller(s events.Subjects) Role {
	r := Role{Name: events.RoleCaller}
	r.Publish = []string{s.RouteAll(), s.DiscoveryServices(), s.DiscoveryInstances()}
	r.Subscribe = []string{r.InboxPrefix() + ".>"}
	return confine(r)
}

// Service is svc-<service>: instances and agents of one service announce
// and deregister it alone, answer heartbeats and requests, on the scoped
// subjects (PROTOCOL v1.2: hail.hb.<service>.<id>,
// hail.inst.<service>.<id>.<endpoint>), which name the service, so the
// user hears only its own service; its instances must announce scoped.
func Service(s events.Subjects, service string) Role {
	return serviceRole(s, service, []string{s.HeartbeatOf(service, "*", true), s.InstOf(service, "*", "*", true)})
}

// ServiceUnscoped is svc-<service> for a service whose instances announce
// unscoped (hail.hb.<id>, hail.inst.<id>.<endpoint>): subjects that do not
// name the service, so it hears the unscoped instances of every service
// (only a region's own choice, secure init --unscoped-services). The
// deny rules confine adds, hail.hb.*.> and hail.inst.*.*.>, keep every
// scoped subject from it; they would refuse its own scoped subscriptions
// too, so this role has none: its instances announce unscoped.
func ServiceUnscoped(s events.Subjects, service string) Role {
	return serviceRole(s, service, []string{s.Heartbeat("*"), s.Inst("*", "*")})
}

func serviceRole(s events.Subjects, name string, instance []string) Role {
	r := Role{Name: events.ServiceRolePrefix + name, AllowResponses: true}
	// The agent runs as its service's user and answers Consul's API and
	// DNS from a follower of the registry (PROTOCOL v1.3), so the role
	// reads hail_instances; it writes nothing there.
	r.Publish = with([]string{s.Announce(name), s.Deregister(name)}, kvRead(bus.InstancesBucket))
	r.Subscribe = with(instance, []string{s.Svc(name, "*"), s.Discover(), r.InboxPrefix() + ".>"}, micro(bus.MicroName(name)))
	return confine(r)
}

// Console: reads the three buckets and HAIL_EVENTS, writes routes only,
// hears health, node and traffic events, asks the discovery queries.
func Console(s events.Subjects) Role {
	r := Role{Name: events.RoleConsole}
	ev := bus.EventsStream
	r.Publish = with([]string{"$KV." + bus.ConfigBucket + ".route.>", s.DiscoveryServices(), s.DiscoveryInstances(), s.DiscoveryRTT(),
		"$JS.API.STREAM.INFO." + ev, "$JS.API.CONSUMER.CREATE." + ev + ".>", "$JS.API.CONSUMER.DELETE." + ev + ".>",
		"$JS.API.CONSUMER.INFO." + ev + ".>", "$JS.API.CONSUMER.MSG.NEXT." + ev + ".>", "$JS.FC." + ev + ".>"},
		kvRead(bus.InstancesBucket), kvRead(bus.NodesBucket), kvRead(bus.ConfigBucket))
	r.Subscribe = []string{s.HealthAll(), s.NodeEventAll(), s.StatsAll(), r.InboxPrefix() + ".>"}
	return confine(r)
}

// All are the roles of a region whose services are services, each
// svc-<service> scoped (Service) unless named in unscoped
// (ServiceUnscoped).
func All(s events.Subjects, services, unscoped []string) []Role {
	out := []Role{Discovery(s), Router(s), Console(s), Caller(s)}
	for _, svc := range services {
		if slices.Contains(unscoped, svc) {
			out = append(out, ServiceUnscoped(s, svc))
		} else {
			out = append(out, Service(s, svc))
		}
	}
	return out
}
