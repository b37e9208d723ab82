package credentials

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nkeys"

	"github.com/hailsd/hail/events"
)

// maxKeyFile bounds a secret or seed file read: both are under 100 bytes.
const maxKeyFile = 4 << 10

// Identities are what the auth callout of a set with Options.Identities
// needs: the key that signs its answers and each service's bootstrap
// secret.
type Identities struct {
	Issuer nkeys.KeyPair
	// Secrets by service.
	Secrets map[string]string
}

// writeIdentities writes a fresh issuer key and a bootstrap secret per
// service into dir.
func writeIdentities(dir string, services []string) error {
	kp, err := nkeys.CreateAccount()
	if err != nil {
		return fmt.Errorf("callout issuer key: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return fmt.Errorf("callout issuer key: %w", err)
	}
	if err := writeFile(dir, CalloutIssuerFile, append(seed, '\n')); err != nil {
		return err
	}
	return writeSecrets(dir, services, false)
}

// writeSecrets writes a fresh bootstrap secret for each of services, or,
// when keep, only for those that have none.
func writeSecrets(dir string, services []string, keep bool) error {
	for _, svc := range services {
		if err := events.ValidateService(svc); err != nil {
			return fmt.Errorf("services: %w", err)
		}
		if _, err := os.Stat(filepath.Join(dir, SecretFile(svc))); keep && err == nil {
			continue
		}
		secret, err := password()
		if err != nil {
			return err
		}
		if err := writeFile(dir, SecretFile(svc), []byte(secret+"\n")); err != nil {
			return err
		}
	}
	return nil
}

// ReadIdentities reads the issuer key and every svc-<service>.secret of
// the set in dir.
func ReadIdentities(dir string) (*Identities, error) {
	seed, err := readKeyFile(filepath.Join(dir, CalloutIssuerFile))
	if err != nil {
		return nil, err
	}
	kp, err := nkeys.FromSeed(seed)
	clear(seed)
	if err != nil {
		// The error names the file, never what it holds.
		return nil, fmt.Errorf("credentials: %s is not an nkey seed", filepath.Join(dir, CalloutIssuerFile))
	}
	ids := &Identities{Issuer: kp, Secrets: map[string]string{}}
	files, err := filepath.Glob(filepath.Join(dir, SecretFile("*")))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		svc := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "svc-"), ".secret")
		if err := events.ValidateService(svc); err != nil {
			return nil, fmt.Errorf("credentials: %s: %w", f, err)
		}
		secret, err := readKeyFile(f)
		if err != nil {
			return nil, err
		}
		if len(secret) == 0 {
			return nil, errors.New("credentials: " + f + " is empty")
		}
		ids.Secrets[svc] = string(secret)
	}
	return ids, nil
}

// readKeyFile is a small file's content without surrounding space.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	defer f.Close()
	buf, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("credentials: read %s: %w", path, err)
	}
	if len(buf) > maxKeyFile {
		return nil, fmt.Errorf("credentials: %s is larger than %d bytes", path, maxKeyFile)
	}
	return bytes.TrimSpace(buf), nil
}

// Kind is the kind of set a directory holds.
type Kind int

const (
	// NoSet: the directory holds no set's files, or is not there.
	NoSet Kind = iota
	// SharedUsers: a set written without Options.Identities, v1.2's
	// shared svc-<service> users.
	SharedUsers
	// IdentitySet: a set written with Options.Identities.
	IdentitySet
)

func (k Kind) String() string {
	switch k {
	case SharedUsers:
		return "shared service users"
	case IdentitySet:
		return "identities"
	}
	return "no set"
}

// KindOf is the kind of set in dir, read from its files whether or not
// the set is complete: a set cut short, or written before one of its
// files was part of a set, still says what it was, so that keeping it
// (services/nats secure init --keep) does not make it the other kind.
// Only a set with identities has CalloutIssuerFile or a SecretFile
// (Write writes them before anything else of it); any other set has an
// auth.conf or a <user>.env.
func KindOf(dir string) (Kind, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return NoSet, nil
	}
	if err != nil {
		return NoSet, fmt.Errorf("credentials %s: %w", dir, err)
	}
	kind := NoSet
	for _, e := range entries {
		name := e.Name()
		switch {
		case name == CalloutIssuerFile || strings.HasPrefix(name, "svc-") && strings.HasSuffix(name, ".secret"):
			return IdentitySet, nil
		case name == AuthConfFile || strings.HasSuffix(name, ".env"):
			kind = SharedUsers
		}
	}
	return kind, nil
}
