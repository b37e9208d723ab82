package discovery

import (
	"fmt"
	"strings"

	"github.com/hailsd/hail/events"
)

// PROTOCOL v1.6: an instance with its own identity announces on
// P.announce.<S>.<id> and deregisters on P.deregister.<S>.<id>, where the
// server's permissions guard the id (only the identity whose key derives
// it, and admin for a deregister, may publish there). Both forms arrive
// on the node's announce and deregister endpoints (P.announce.> and
// P.deregister.>); the last token tells them apart: an id when it is a
// canonical UUID, which no service name's last token may be. The body
// must say the subject's service and id, or it is refused: otherwise an
// identity could carry another instance's id in the body past the guard
// on the subject.

// reasonIDMismatch counts an identity's announce or deregister whose body
// names another id than its subject.
const reasonIDMismatch = "id_mismatch"

// controlSubject reads an announce or deregister subject (kind "announce"
// or "deregister"): the service, and the id when it is an identity's
// (v1.6), "" for the v1 form.
func controlSubject(s events.Subjects, kind, subject string) (service, id string, err error) {
	p := s.Parse()
	parse := p.Announce
	if kind == "deregister" {
		parse = p.Deregister
	}
	if i := strings.LastIndexByte(subject, '.'); i >= 0 && events.IsID(subject[i+1:]) {
		// The identity form: what precedes the id must itself be a
		// valid subject of kind (P.<kind>.<service>).
		service, err := parse(subject[:i])
		if err != nil {
			return "", "", err
		}
		return service, subject[i+1:], nil
	}
	service, err = parse(subject)
	return service, "", err
}

// announceSubject and deregisterSubject are controlSubject for the
// decoder.
func (d controlDecoder) announceSubject(subject string) (string, string, error) {
	return controlSubject(d.subjects, "announce", subject)
}

func (d controlDecoder) deregisterSubject(subject string) (string, string, error) {
	return controlSubject(d.subjects, "deregister", subject)
}

// checkKey is the decoder's last check: the body's service is the
// subject's and, on an identity's subject, so is its id. A refusal comes
// with its reason.
func checkKey(kind, subjectService, subjectID, service, id string) (string, error) {
	if service != subjectService {
		return reasonMismatch, fmt.Errorf("%s: service %q in the body differs from %q in the subject", kind, service, subjectService)
	}
	if subjectID != "" && id != subjectID {
		return reasonIDMismatch, fmt.Errorf("%s: id %q in the body differs from %q in the subject; an identity %ss only itself", kind, truncate(id), subjectID, kind)
	}
	return "", nil
}

// requester is who a request on subject could have come from, for the
// reply rule: the service an announce or deregister names, and the id
// when it is an identity's; both "" for a query, or a subject that names
// none (refused later, with its reason).
func requester(s events.Subjects, kind requestKind, subject string) (service, id string) {
	switch kind {
	case kindAnnounce:
		service, id, _ = controlSubject(s, "announce", subject)
	case kindDeregister:
		service, id, _ = controlSubject(s, "deregister", subject)
	}
	return service, id
}

// An identity's connection is named by the server itself: its CONNECT
// and DISCONNECT advisories' client.user is <S>.<id>, the name the auth
// callout gave the identity (PROTOCOL v1.6), which no one else can take.
// So discovery knows an identity's live connections from the server
// (connects.go) and marks its own instance critical when the last of
// them closes, whatever the instance announced as its conn. Only for an
// identity discovery never heard connect does the announced conn count,
// as v1.4 says, to skip an advisory that came late: a record that names
// another connection was announced from a newer one (or its instance
// lied about itself, which harms it alone).

// identityOf is the instance key of the identity an advisory's user
// names (<S>.<id>), or "" for any other user.
func identityOf(user string) string {
	i := strings.LastIndexByte(user, '.')
	if i < 0 || !events.IsID(user[i+1:]) || events.ValidateService(user[:i]) != nil {
		return ""
	}
	return user // <S>.<id> is the instance key
}

// instancesOn are the owned instances the closed connection conn was:
// the identity's own instance when the advisory named one (v1.6), whose
// record's conn counts only when discovery never heard the identity
// connect (then a record that names another connection skips it); else
// those whose records name conn (PROTOCOL v1.4).
func (o *ownedSet) instancesOn(conn events.Conn, who closedIdentity) []*tracked {
	if who.key == "" {
		return o.onConn(conn)
	}
	t := o.get(who.key)
	if t == nil {
		return nil
	}
	if c := t.rec.Conn; !who.heard && c != nil && *c != conn {
		return nil
	}
	return []*tracked{t}
}
