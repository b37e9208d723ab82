// Package identity is an instance's own NATS identity (PROTOCOL v1.6): an
// nkey, the id derived from its public key, and the options that connect
// with it, its service name and the service's bootstrap secret. The
// server's auth callout (package callout) derives the id the same way, so
// nobody can claim an id without holding its key.
package identity

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// maxSeedFile bounds what Load reads: a user seed is 58 characters.
const maxSeedFile = 4 << 10

// Identity is one nkey and the id derived from it.
type Identity struct {
	kp  nkeys.KeyPair
	pub string
	id  string
	// priv is kp's ed25519 key, derived once: nkeys derives it from the
	// seed again on every Sign, doubling the cost of each connect's.
	priv ed25519.PrivateKey
}

// New makes a fresh identity (a new ed25519 key).
func New() (*Identity, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("new identity: %w", err)
	}
	return fromKeyPair(kp)
}

// Load reads the identity whose user seed is in seedFile (as Save wrote
// it), so that an instance keeps its id across restarts.
func Load(seedFile string) (*Identity, error) {
	f, err := os.Open(seedFile)
	if err != nil {
		return nil, fmt.Errorf("load identity: %w", err)
	}
	defer f.Close()
	buf, err := io.ReadAll(io.LimitReader(f, maxSeedFile+1))
	if err != nil {
		return nil, fmt.Errorf("load identity: %w", err)
	}
	defer clear(buf)
	if len(buf) > maxSeedFile {
		return nil, fmt.Errorf("load identity %s: larger than %d bytes", seedFile, maxSeedFile)
	}
	seed := bytes.TrimSpace(buf)
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		// The error names the file, never what it holds.
		return nil, fmt.Errorf("load identity %s: not an nkey seed", seedFile)
	}
	if p, _ := kp.PublicKey(); !nkeys.IsValidPublicUserKey(p) {
		return nil, fmt.Errorf("load identity %s: not a user seed", seedFile)
	}
	return fromKeyPair(kp)
}

// Save writes i's seed to seedFile, readable by its owner alone (0600).
func (i *Identity) Save(seedFile string) error {
	seed, err := i.kp.Seed()
	if err != nil {
		return fmt.Errorf("save identity: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(seedFile), ".identity-*")
	if err != nil {
		return fmt.Errorf("save identity: %w", err)
	}
	// seed is the key pair's own slice: written as is, never appended to.
	_, werr := tmp.Write(seed)
	if werr == nil {
		_, werr = tmp.Write([]byte("\n"))
	}
	if err := errors.Join(werr, tmp.Chmod(0o600), tmp.Close()); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("save identity: %w", err)
	}
	if err := os.Rename(tmp.Name(), seedFile); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("save identity: %w", err)
	}
	return nil
}

func fromKeyPair(kp nkeys.KeyPair) (*Identity, error) {
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	// Seed is the key pair's own slice: not to be cleared.
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	_, raw, err := nkeys.DecodeSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	defer clear(raw)
	return &Identity{kp: kp, pub: pub, id: ID(pub), priv: ed25519.NewKeyFromSeed(raw)}, nil
}

// ID is the instance id of the nkey whose public key is pub:
// UUIDv5(hail's namespace, "nkey:"+pub), hail's namespace being the
// UUIDv5 of the URL namespace and "hail" (PROTOCOL v1.3, v1.6).
func ID(pub string) string {
	ns := uuid.NewSHA1(uuid.NameSpaceURL, []byte("hail"))
	return uuid.NewSHA1(ns, []byte("nkey:"+pub)).String()
}

// sign signs the server's nonce, as nkeys' Sign would.
func (i *Identity) sign(nonce []byte) ([]byte, error) { return ed25519.Sign(i.priv, nonce), nil }

// ID is the instance id i may claim.
func (i *Identity) ID() string { return i.id }

// PublicKey is i's nkey's public key (U...).
func (i *Identity) PublicKey() string { return i.pub }

// InboxPrefix is the identity's own reply prefix, _INBOX.<id>.
func (i *Identity) InboxPrefix() string { return "_INBOX." + i.id }

// Options connect as i: its nkey signs the server's nonce, user is the
// service, password its bootstrap secret, the connection is named by the
// id and replies come on the identity's own inbox prefix. An
// authorization error does not end the reconnects (the callout may be
// down for a moment while its server restarts).
func (i *Identity) Options(service, secret string) []nats.Option {
	return []nats.Option{
		nats.Nkey(i.pub, i.sign),
		nats.UserInfo(service, secret),
		nats.Name(i.id),
		nats.CustomInboxPrefix(i.InboxPrefix()),
		nats.IgnoreAuthErrorAbort(),
	}
}
