package roles

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/hailsd/hail/events"
)

// Admin is the operator's role (PROTOCOL v1.6): it deregisters any
// instance, on hail.deregister.<service>.<id> as on the unscoped subject
// of regions without identities.
func Admin(s events.Subjects) Role {
	r := Role{Name: events.RoleAdmin}
	r.Publish = []string{s.DeregisterAll()}
	r.Subscribe = []string{r.InboxPrefix() + ".>"}
	return confine(r)
}

// IdentityRole is the permissions of one instance's own identity (PROTOCOL
// v1.6), the user JWT the auth callout answers for service and id: the
// subjects name that id alone, so the server itself refuses an announce,
// a deregister, a heartbeat answer or a subscription of another instance.
// Its Name is the JWT's, <service>.<id>; its inbox is _INBOX.<id>, not
// _INBOX.<Name>.
type IdentityRole struct {
	Role
	// DenyPublish are refused although Publish or a response allows them.
	DenyPublish []string
}

// Identity is the role of instance id of service.
func Identity(s events.Subjects, service, id string) IdentityRole {
	r := Role{Name: service + "." + id, AllowResponses: true}
	r.Publish = []string{s.Announce(service) + "." + id, s.Deregister(service) + "." + id}
	svc := s.Svc(service, "*")
	r.Subscribe = []string{s.HeartbeatOf(service, id, true), s.InstOf(service, id, "*", true),
		svc + " " + s.QueueGroup(service), s.Discover(), "_INBOX." + id + ".>"}
	r = confine(r)
	// confine sees the queue form as one string; its subject needs the
	// same deny (a deny names no queue, so it holds for every queue).
	r.DenySubscribe = append(r.DenySubscribe, svc+".>")
	return IdentityRole{Role: r, DenyPublish: []string{"$SYS.>"}}
}

// CalloutConf renders the authorization block that hands every
// connection that is not one of authUsers (the static roles and the
// callout's own user) to the auth callout (NATS ADR-26, config mode):
// issuer is the public account nkey that signs its answers, account the
// one the callout's user connects in and its answers place users in.
func CalloutConf(issuer, account string, authUsers []string) string {
	var b strings.Builder
	b.WriteString("# Every connection not of auth_users is authorized by services/nats's auth callout (PROTOCOL v1.6).\n")
	b.WriteString("authorization: {\n  auth_callout: {\n")
	fmt.Fprintf(&b, "    issuer: %s\n    account: %s\n", strconv.Quote(issuer), strconv.Quote(account))
	fmt.Fprintf(&b, "    auth_users: [%s]\n", quoted(authUsers))
	b.WriteString("  }\n}\n")
	return b.String()
}

// Account is the one NATS account of hail's roles (AuthConf's), where the
// callout places every identity.
const Account = "HAIL"

// CalloutUser is the role of the auth callout's own connection: it hears
// the server's authorization requests and answers them, nothing else.
func CalloutUser() Role {
	return Role{Name: "callout", Subscribe: []string{"$SYS.REQ.USER.AUTH"}, AllowResponses: true}
}

// IdentityRegion are the static roles of a region whose instances connect
// with their own identities (PROTOCOL v1.6): no shared svc-<service>
// users, the admin role, and the callout's user. They are the callout's
// auth_users.
func IdentityRegion(s events.Subjects) []Role {
	return []Role{Discovery(s), Router(s), Console(s), Caller(s), Admin(s), CalloutUser()}
}
