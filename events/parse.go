package events

import (
	"fmt"
	"strings"
)

// Parser reads subjects of one prefix back into their parts (Subjects
// builds them): a subject from the bus is outside input, so every part
// comes back a validated name, or an error that says which is wrong.
type Parser struct{ s Subjects }

// Parse is the parser of s's subjects.
func (s Subjects) Parse() Parser { return Parser{s} }

// rest returns what follows P.<kind>. in subject.
func (p Parser) rest(subject, kind string) (string, error) {
	pre := p.s.p() + "." + kind + "."
	if !strings.HasPrefix(subject, pre) {
		return "", invalid("subject %q does not start with %q", truncate(subject), pre)
	}
	return subject[len(pre):], nil
}

// splitLast splits rest at its last dot: everything before it and the last token.
func splitLast(subject, rest, what string) (string, string, error) {
	i := strings.LastIndexByte(rest, '.')
	if i < 0 {
		return "", "", invalid("subject %q has no %s token", truncate(subject), what)
	}
	return rest[:i], rest[i+1:], nil
}

// Announce returns the service of P.announce.<service>.
func (p Parser) Announce(subject string) (string, error) {
	return p.service(subject, "announce")
}

// Deregister returns the service of P.deregister.<service>.
func (p Parser) Deregister(subject string) (string, error) {
	return p.service(subject, "deregister")
}

func (p Parser) service(subject, kind string) (string, error) {
	service, err := p.rest(subject, kind)
	if err != nil {
		return "", err
	}
	if err := ValidateService(service); err != nil {
		return "", fmt.Errorf("subject %q: %w", truncate(subject), err)
	}
	return service, nil
}

// Heartbeat returns the id of P.hb.<id>.
func (p Parser) Heartbeat(subject string) (string, error) {
	id, err := p.rest(subject, "hb")
	if err != nil {
		return "", err
	}
	if err := ValidateID(id); err != nil {
		return "", fmt.Errorf("subject %q: %w", truncate(subject), err)
	}
	return id, nil
}

// Health returns the service and id of P.health.<service>.<id>.
func (p Parser) Health(subject string) (service, id string, err error) {
	return p.serviceLast(subject, "health", "id", ValidateID)
}

// Svc returns the service and endpoint of P.svc.<service>.<endpoint>.
func (p Parser) Svc(subject string) (service, endpoint string, err error) {
	return p.serviceLast(subject, "svc", "endpoint", ValidateEndpoint)
}

// Route returns the service and endpoint of P.route.<service>.<endpoint>.
func (p Parser) Route(subject string) (service, endpoint string, err error) {
	return p.serviceLast(subject, "route", "endpoint", ValidateEndpoint)
}

// Inst returns the id and endpoint of P.inst.<id>.<endpoint>.
func (p Parser) Inst(subject string) (id, endpoint string, err error) {
	rest, err := p.rest(subject, "inst")
	if err != nil {
		return "", "", err
	}
	id, endpoint, err = splitLast(subject, rest, "endpoint")
	if err != nil {
		return "", "", err
	}
	if err := ValidateID(id); err != nil {
		return "", "", fmt.Errorf("subject %q: %w", truncate(subject), err)
	}
	if err := ValidateEndpoint(endpoint); err != nil {
		return "", "", fmt.Errorf("subject %q: %w", truncate(subject), err)
	}
	return id, endpoint, nil
}

// parseServiceLast parses P.<kind>.<service>.<last>: a service may hold
// dots, so the last token is split off first.
func (p Parser) serviceLast(subject, kind, what string, check func(string) error) (string, string, error) {
	rest, err := p.rest(subject, kind)
	if err != nil {
		return "", "", err
	}
	service, last, err := splitLast(subject, rest, what)
	if err != nil {
		return "", "", err
	}
	if err := ValidateService(service); err != nil {
		return "", "", fmt.Errorf("subject %q: %w", truncate(subject), err)
	}
	if err := check(last); err != nil {
		return "", "", fmt.Errorf("subject %q: %w", truncate(subject), err)
	}
	return service, last, nil
}
