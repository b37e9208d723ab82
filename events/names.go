package events

import (
	"errors"
	"fmt"
)

// Limits of PROTOCOL.md "Names".
const (
	MaxServiceLen    = 128
	MaxServiceTokens = 8
	MaxEndpointLen   = 64
	// MaxPayload bounds every control message (announce, deregister,
	// queries). Application payloads are not limited here.
	MaxPayload = 64 * 1024
)

// ErrInvalid is wrapped by every validation error, so callers can tell bad
// input (a 400) from a failure of their own.
var ErrInvalid = errors.New("invalid")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// ValidateService checks a service name: 1..8 dot-separated tokens of
// [a-z0-9_-], at most 128 bytes.
func ValidateService(s string) error {
	switch {
	case s == "":
		return invalid("service name is empty")
	case len(s) > MaxServiceLen:
		return invalid("service name is %d bytes, over the %d-byte limit", len(s), MaxServiceLen)
	}
	tokens := 1
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if i == start {
				return invalid("service name %q has an empty token", s)
			}
			tokens++
			start = i + 1
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_', c == '-':
		case c == '*' || c == '>':
			return invalid("service name %q contains wildcard %q", s, c)
		case c >= 'A' && c <= 'Z':
			return invalid("service name %q contains upper case %q; service names are lower case", s, c)
		default:
			return invalid("service name %q contains %s; allowed are a-z 0-9 _ - and . between tokens", s, describe(c))
		}
	}
	if start == len(s) {
		return invalid("service name %q has an empty token", s)
	}
	if tokens > MaxServiceTokens {
		return invalid("service name %q has %d tokens, over the limit of %d", s, tokens, MaxServiceTokens)
	}
	// PROTOCOL v1.6: hail.announce.<S>.<id> is read by its last token,
	// an id when it is a canonical UUID; a service's may not be one.
	if IsID(s[start:]) {
		return invalid("service name %q ends in a UUID, which PROTOCOL v1.6 reads as an instance id", s)
	}
	return nil
}

// ValidateEndpoint checks an endpoint name: one token of [A-Za-z0-9_-], at
// most 64 bytes.
func ValidateEndpoint(s string) error {
	switch {
	case s == "":
		return invalid("endpoint name is empty")
	case len(s) > MaxEndpointLen:
		return invalid("endpoint name is %d bytes, over the %d-byte limit", len(s), MaxEndpointLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		case c == '*' || c == '>':
			return invalid("endpoint name %q contains wildcard %q", s, c)
		default:
			return invalid("endpoint name %q contains %s; allowed are A-Z a-z 0-9 _ -", s, describe(c))
		}
	}
	return nil
}

// IsID reports whether s is an instance or node id, as ValidateID would
// accept it, without the error: asked of every announce's subject and
// every service name, where a formatted refusal was most of its cost.
func IsID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
			continue
		}
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	v, r := s[14], s[19]
	return (v == '4' || v == '5' || v == '7') && (r == '8' || r == '9' || r == 'a' || r == 'b')
}

// ValidateID checks an instance or node id: a UUID (version 4 or 7, or 5
// for ids derived from a name: PROTOCOL v1.3) in canonical lower-case
// text form.
func ValidateID(s string) error {
	if IsID(s) {
		return nil
	}
	if len(s) != 36 {
		return invalid("id %q is not a canonical UUID (want 36 characters like 0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a6b)", truncate(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return invalid("id %q is not a canonical UUID (want a dash at position %d)", s, i)
			}
			continue
		}
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			return invalid("id %q must be lower case", s)
		default:
			return invalid("id %q is not a canonical UUID (%s at position %d)", s, describe(c), i)
		}
	}
	if v := s[14]; v != '4' && v != '5' && v != '7' {
		return invalid("id %q is a version %c UUID; want version 4, 5 or 7", s, v)
	}
	if v := s[19]; v != '8' && v != '9' && v != 'a' && v != 'b' {
		return invalid("id %q does not have the RFC 9562 variant", s)
	}
	return nil
}

func describe(c byte) string {
	switch {
	case c == ' ':
		return "a space"
	case c < 0x20 || c == 0x7f:
		return fmt.Sprintf("control byte 0x%02x", c)
	case c >= 0x80:
		return "a non-ASCII byte"
	default:
		return fmt.Sprintf("%q", c)
	}
}

func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
