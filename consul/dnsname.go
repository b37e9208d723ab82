package consul

import (
	"slices"
	"strings"
)

// nameKind is what a DNS question's name asks for.
type nameKind int

const (
	// nameOutside is outside every domain served: REFUSED.
	nameOutside nameKind = iota
	// nameUnknown is inside a domain but names nothing: NXDOMAIN.
	nameUnknown
	// nameApex is a domain itself.
	nameApex
	// nameService is <labels>.service.<domain>.
	nameService
	// nameInstance is <id>.instance.<domain>.
	nameInstance
)

// dnsName is a question's name, read.
type dnsName struct {
	kind nameKind
	// domain is the served domain it is under, as configured ("hail.").
	domain string
	// labels are those before "service" or "instance", lower case.
	labels []string
}

// maxNameLen bounds a name: DNS's own limit in presentation form.
const maxNameLen = 255

// parseName reads qname against the domains served (lower-case, fully
// qualified) and the datacenter dc (Consul's <s>.service.<dc>.<domain>
// is taken too). Names are case-insensitive.
func parseName(qname string, domains []string, dc string) dnsName {
	if len(qname) > maxNameLen {
		return dnsName{kind: nameOutside}
	}
	name := strings.ToLower(qname)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	for _, d := range domains {
		if d == "" {
			continue
		}
		if name == d {
			return dnsName{kind: nameApex, domain: d}
		}
		rest, ok := strings.CutSuffix(name, "."+d)
		if !ok {
			continue
		}
		n := dnsName{kind: nameUnknown, domain: d}
		// An escaped byte (\. or \ddd) cannot be in a service name, a tag
		// or an id.
		if rest == "" || strings.ContainsRune(rest, '\\') {
			return n
		}
		labels := strings.Split(rest, ".")
		if slices.Contains(labels, "") {
			return n
		}
		if k := len(labels); k >= 3 && dc != "" && labels[k-1] == strings.ToLower(dc) && labels[k-2] == "service" {
			labels = labels[:k-1]
		}
		k := len(labels)
		switch {
		case k >= 2 && labels[k-1] == "service":
			n.kind, n.labels = nameService, labels[:k-1]
		case k == 2 && labels[1] == "instance":
			n.kind, n.labels = nameInstance, labels[:1]
		}
		return n
	}
	return dnsName{kind: nameOutside}
}

// serviceCandidates lists the readings of a service name's labels, in the
// order they are tried: the whole as a service name (names may hold
// dots); RFC 2782's _<service>._<proto> (a protocol other than tcp or udp
// is a tag, as Consul reads it); the first label as a tag and the rest as
// the service.
func serviceCandidates(labels []string) []struct{ service, tag string } {
	out := []struct{ service, tag string }{{service: strings.Join(labels, ".")}}
	if len(labels) == 2 && strings.HasPrefix(labels[0], "_") && strings.HasPrefix(labels[1], "_") && len(labels[0]) > 1 && len(labels[1]) > 1 {
		tag := labels[1][1:]
		if tag == "tcp" || tag == "udp" {
			tag = ""
		}
		out = append(out, struct{ service, tag string }{labels[0][1:], tag})
	}
	if len(labels) >= 2 {
		out = append(out, struct{ service, tag string }{strings.Join(labels[1:], "."), labels[0]})
	}
	return out
}
