package events

import "strings"

// The static roles' names (PROTOCOL v1.2 and v1.6), each also the last
// token of its inbox prefix, _INBOX.<role>; a service's instances are
// svc-<service>. Discovery and the router read a reply subject's owner
// from them, so that neither answers into an inbox its requester could
// not own ([trust]).
const (
	RoleDiscovery = "discovery"
	RoleRouter    = "router"
	RoleConsole   = "console"
	RoleCaller    = "caller"
	RoleAdmin     = "admin"
	// ServiceRolePrefix starts the role of a service's instances.
	ServiceRolePrefix = "svc-"
)

// InboxOwner is the token after _INBOX. in reply: the role (or, v1.6,
// the identity) whose inbox it is in a secured region. ok is false for a
// subject outside _INBOX.
func InboxOwner(reply string) (owner string, ok bool) {
	rest, ok := strings.CutPrefix(reply, "_INBOX.")
	if !ok {
		return "", false
	}
	owner, _, _ = strings.Cut(rest, ".")
	return owner, true
}
