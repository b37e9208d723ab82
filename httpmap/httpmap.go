// Package httpmap is how hail carries HTTP over NATS (PROTOCOL v1.1 "The
// bridge" and "HTTP ingress"): which headers cross in each direction, and
// where an HTTP request's method, path and status travel. The router's
// ingress turns HTTP into NATS and back; the agent's bridge turns NATS into
// HTTP and back; both go through here so that the two halves agree.
package httpmap

import (
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
)

// Headers of PROTOCOL v1.1.
const (
	HeaderMethod = "Hail-Method"
	HeaderPath   = "Hail-Path"
	HeaderStatus = "Hail-Status"
)

// hopByHop are the headers of one HTTP connection, never forwarded
// (RFC 9110 7.6.1), and Content-Length, which the receiving side sets.
var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true, "Proxy-Authorization": true,
	"Proxy-Connection": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Content-Length": true,
}

// connectionListed are the extra hop-by-hop headers a Connection header
// names.
func connectionListed(h http.Header) map[string]bool {
	out := map[string]bool{}
	for _, v := range h.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				out[textproto.CanonicalMIMEHeaderKey(name)] = true
			}
		}
	}
	return out
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// IngressHeaders are an HTTP request's headers as the NATS headers of the
// routed request: hop-by-hop ones and any Nats-* a client sent are
// dropped; Hail-* (Hail-Key) stay.
func IngressHeaders(h http.Header) nats.Header {
	listed := connectionListed(h)
	out := nats.Header{}
	for k, vs := range h {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		if hopByHop[ck] || listed[ck] || hasPrefixFold(k, "Nats-") {
			continue
		}
		out[ck] = append([]string(nil), vs...)
	}
	return out
}

// BridgeHeaders are a NATS request's headers as the HTTP request's: every
// one but Hail-* and Nats-* and hop-by-hop ones.
func BridgeHeaders(h nats.Header) http.Header {
	out := http.Header{}
	for k, vs := range h {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		if hopByHop[ck] || hasPrefixFold(k, "Hail-") || hasPrefixFold(k, "Nats-") {
			continue
		}
		out[ck] = append([]string(nil), vs...)
	}
	return out
}

// ReplyHeaders are an HTTP response's headers as the NATS reply's: every
// one but hop-by-hop ones and Nats-* (the service does not speak for the
// bridge's error headers), with Hail-Status added.
func ReplyHeaders(h http.Header, status int) nats.Header {
	listed := connectionListed(h)
	out := nats.Header{}
	for k, vs := range h {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		if hopByHop[ck] || listed[ck] || hasPrefixFold(k, "Nats-") || hasPrefixFold(k, "Hail-") {
			continue
		}
		out[ck] = append([]string(nil), vs...)
	}
	out.Set(HeaderStatus, strconv.Itoa(status))
	return out
}

// ResponseHeaders are a NATS reply's headers as the HTTP response's:
// every one but Nats-* and Hail-Status (Hail-Instance stays).
func ResponseHeaders(h nats.Header) http.Header {
	out := http.Header{}
	for k, vs := range h {
		if hasPrefixFold(k, "Nats-") || strings.EqualFold(k, HeaderStatus) || hopByHop[textproto.CanonicalMIMEHeaderKey(k)] {
			continue
		}
		out[textproto.CanonicalMIMEHeaderKey(k)] = append([]string(nil), vs...)
	}
	return out
}

// Status is the HTTP status a NATS reply stands for: its Hail-Status, else
// its Nats-Service-Error-Code, else 200.
func Status(m *nats.Msg) int {
	if m.Header != nil {
		for _, k := range []string{HeaderStatus, events.HeaderServiceErrorCode} {
			if v := Get(m.Header, k); v != "" {
				if code, err := strconv.Atoi(v); err == nil && code >= 100 && code <= 999 {
					return code
				}
			}
		}
	}
	return http.StatusOK
}

// Get is h's value of name, matched case-insensitively (NATS headers keep
// the case they were sent with; PROTOCOL v1.1 matches names without it).
func Get(h nats.Header, name string) string {
	if v := h.Get(name); v != "" {
		return v
	}
	for k, vs := range h {
		if strings.EqualFold(k, name) && len(vs) > 0 {
			return vs[0]
		}
	}
	return ""
}
