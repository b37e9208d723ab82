package roles

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
)

// HashToken is how a console token is written in a tokens file
// (console.tokens_file): "sha256:" and the hex SHA-256 of the token. It
// lives here, with the rest of who may do what, so that `secure init`
// writes the hash without linking the console (and html/template) into
// the NATS server.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(h[:])
}

// Scope is what a token may do.
type Scope int

const (
	// ScopeNone: no valid token.
	ScopeNone Scope = iota
	// ScopeRead sees everything and changes nothing.
	ScopeRead
	// ScopeWrite may also change things (routes, drains, registrations).
	ScopeWrite
)

// Tokens are bearer tokens with a scope (the console's, the agent's
// Consul API's), kept as SHA-256 hashes so that the
// file (and the process's memory) never hold one that works.
type Tokens struct {
	hashes map[[sha256.Size]byte]Scope
}

// ParseTokens reads a tokens file: one "<read|write> sha256:<hex>" per
// line (the hash as HashToken writes it); blank lines and lines
// starting with # are skipped. Errors name the line, never its hash.
func ParseTokens(text string) (*Tokens, error) {
	t := &Tokens{hashes: map[[sha256.Size]byte]Scope{}}
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("tokens line %d: want \"<read|write> sha256:<hex>\"", n)
		}
		var s Scope
		switch f[0] {
		case "read":
			s = ScopeRead
		case "write":
			s = ScopeWrite
		default:
			return nil, fmt.Errorf("tokens line %d: scope %q is not read or write", n, f[0])
		}
		hx, ok := strings.CutPrefix(f[1], "sha256:")
		b, err := hex.DecodeString(hx)
		if !ok || err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("tokens line %d: the hash is not sha256:<64 hex digits> (write tokens with `discovery hash-token`)", n)
		}
		t.hashes[[sha256.Size]byte(b)] = s
	}
	if len(t.hashes) == 0 {
		return nil, fmt.Errorf("tokens: no token")
	}
	return t, nil
}

// LoadTokens reads a tokens file (see ParseTokens).
func LoadTokens(path string) (*Tokens, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	t, err := ParseTokens(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Scope is what token may do.
func (t *Tokens) Scope(token string) Scope {
	if t == nil || token == "" {
		return ScopeNone
	}
	// A lookup by hash: its timing tells about the hash, never the token.
	return t.hashes[sha256.Sum256([]byte(token))]
}
