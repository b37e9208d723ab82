package discovery

import (
	"strings"

	"github.com/hailsd/hail/events"
	"github.com/nats-io/nats.go"
)

// replyRule says which reply subjects a node answers: only one the
// requester could own (PROTOCOL v1.2 details, [trust]). Otherwise anyone
// who may send a request could have the node answer into someone else's
// inbox: into the router's, where the answer is taken for an instance's
// reply to a routed request, or into the node's own heartbeat inbox, where
// it is taken for a silent instance's heartbeat. A node is a deputy that
// must not be confused so.
//
// In a secured region every user has its role's inbox prefix
// (_INBOX.<role>, roles.Role.InboxPrefix), so the second token of a reply
// subject names who may read it. The rule needs no configuration, so it
// holds wherever a node is built (discovery.New, in a test too).
type replyRule struct {
	// own are the node's own inbox prefixes, each with its trailing dot:
	// where its requests' answers and its heartbeats' replies come.
	own []string
}

// newReplyRule takes the node's own inbox prefix from its connection: the
// custom prefix every inbox of it starts with (its role's, in a secured
// region). Without one, its inboxes are nats.go's _INBOX.<nuid>..., and
// the one others see is the heartbeat tracker's, which Run adds
// (ownInbox) once it has made the tracker. (Not the whole of
// _INBOX.<nuid>.: a program may share the node's connection, as the
// discovery program's console does by default, and ask it queries.)
func newReplyRule(nc *nats.Conn) replyRule {
	var r replyRule
	if p := nc.Opts.InboxPrefix; p != "" {
		r.ownInbox(p + ".")
	}
	return r
}

// ownInbox adds prefix to the node's own inboxes.
func (r *replyRule) ownInbox(prefix string) { r.own = append(r.own, prefix) }

// requestKind is what a request asks, which decides who may have sent it.
type requestKind int

const (
	kindAnnounce requestKind = iota
	kindDeregister
	kindQuery // hail.discovery.services, .instances, .rtt
)

// answers reports why reply may not be answered for a request of kind
// about service (empty for a query): "" when it may, reasonReplyTo when
// it is no inbox at all, reasonForeignReply when it is an inbox its sender
// could not own. identity is the instance id a v1.6 identity's subject
// carries (hail.announce.<S>.<id>, Node.requester), "" on the v1 form: an
// identity's inbox (_INBOX.<id>) is answered for that id's own subjects
// alone, never for another's or for the v1 form.
func (r replyRule) answers(kind requestKind, reply, service, identity string) string {
	if reply == "" {
		return "" // nothing is sent
	}
	owner, ok := events.InboxOwner(reply)
	if !ok {
		// Nobody may make a node publish where the sender may not (a
		// health subject, say).
		return reasonReplyTo
	}
	for _, own := range r.own {
		if strings.HasPrefix(reply+".", own) {
			return reasonForeignReply
		}
	}
	switch {
	case owner == events.RoleDiscovery || owner == events.RoleRouter:
		return reasonForeignReply // they ask discovery nothing
	case owner == events.RoleConsole || owner == events.RoleCaller:
		if kind != kindQuery {
			return reasonForeignReply
		}
	case owner == events.RoleAdmin:
		if kind == kindAnnounce {
			return reasonForeignReply
		}
	case strings.HasPrefix(owner, events.ServiceRolePrefix):
		// An instance of S asks about S only, and asks no queries.
		if kind == kindQuery || owner != events.ServiceRolePrefix+service {
			return reasonForeignReply
		}
	case isIdentity(owner):
		// v1.6: an identity's own inbox, for its own announce or
		// deregister only.
		if kind == kindQuery || owner != identity {
			return reasonForeignReply
		}
	}
	return ""
}

// isIdentity reports an inbox token that is an instance's identity
// (PROTOCOL v1.6: _INBOX.<id>, a canonical UUID), never a nats.go
// default inbox (_INBOX.<nuid>, 22 characters).
func isIdentity(token string) bool { return events.IsID(token) }
