// Package credentials makes what a secured region needs, in one
// directory: a private CA, a server certificate, and one NATS user per
// role of package roles with a random password, stored bcrypt-hashed in
// auth.conf (for the server) and in the clear in one <user>.env each (for
// the program that runs as that user, and nobody else: mode 0600), with
// the bare password in <user>.password (for nats.password_file), and a
// console token with write scope: console.token for the operator,
// console.tokens (hashed) for console.tokens_file.
package credentials

import (
	"bufio"
	"cmp"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/bcrypt"

	"github.com/hailsd/hail/config"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/roles"
)

// The files of a directory, besides one <user>.env per user.
const (
	CAFile         = "ca.pem"
	CAKeyFile      = "ca-key.pem"
	ServerCertFile = "server.pem"
	ServerKeyFile  = "server-key.pem"
	AuthConfFile   = "auth.conf"
	// ConsoleTokenFile holds a bearer token of the console with write
	// scope; ConsoleTokensFile its hash, for console.tokens_file.
	ConsoleTokenFile  = "console.token"
	ConsoleTokensFile = "console.tokens"
	// CalloutIssuerFile holds the seed of the account nkey that signs the
	// auth callout's answers (Options.Identities).
	CalloutIssuerFile = "callout-issuer.nk"
)

// SecretFile is the file of service's bootstrap secret (PROTOCOL v1.6),
// the secret alone on one line.
func SecretFile(service string) string { return "svc-" + service + ".secret" }

// User is one role's NATS user.
type User struct {
	Name, Password, InboxPrefix string
}

// Dir is a directory of credentials.
type Dir struct {
	Path  string // absolute
	Users []User
}

// File is the absolute path of one of d's files.
func (d *Dir) File(name string) string { return filepath.Join(d.Path, name) }

// User is the user called name.
func (d *Dir) User(name string) (User, bool) {
	for _, u := range d.Users {
		if u.Name == name {
			return u, true
		}
	}
	return User{}, false
}

// Options are the NATS options that connect as the user called name,
// trusting d's CA, as every program's nats section would.
func (d *Dir) Options(name string) ([]nats.Option, error) {
	u, ok := d.User(name)
	if !ok {
		return nil, fmt.Errorf("credentials %s: no user %q", d.Path, name)
	}
	n := config.NATS{User: u.Name, Password: u.Password, InboxPrefix: u.InboxPrefix, TLS: config.NATSTLS{CA: d.File(CAFile)}}
	return n.Options()
}

// Options say what a set is for.
type Options struct {
	// Services get one svc-<service> user each.
	Services []string
	// Hosts (IPs and names) the server certificate is for.
	Hosts []string
	// Unscoped are services (of Services) whose user gets the unscoped
	// subjects instead of the scoped ones (roles.ServiceUnscoped), for
	// instances that announce unscoped; every other service's user hears
	// only its own scoped subjects (roles.Service), so its instances must
	// announce scoped.
	Unscoped []string
	// HashCost is bcrypt's cost for the passwords auth.conf holds; 0 is
	// 11. The server checks a password at the cost it was hashed with on
	// every connection (hail's servers set DisableShortFirstPing, so a
	// slow check delays a connect rather than failing it). Tests and
	// throwaway regions lower it (MinHashCost).
	HashCost int
	// Identities writes a region whose instances connect with their own
	// identities (PROTOCOL v1.6): a bootstrap secret per service
	// (SecretFile) instead of svc-<service> users, the admin role, and an
	// auth.conf that hands every other connection to services/nats's auth
	// callout (CalloutIssuerFile signs its answers).
	Identities bool
}

// roleTable is the static roles of a set for o.
func roleTable(o Options) []roles.Role {
	if o.Identities {
		return roles.IdentityRegion(events.Subjects{})
	}
	return roles.All(events.Subjects{}, o.Services, o.Unscoped)
}

// MinHashCost is bcrypt's lowest cost: for tests and throwaway regions
// (the bench's), whose connects are not what they are about.
const MinHashCost = bcrypt.MinCost

// Write makes dir (if need be) and writes a fresh set into it.
func Write(dir string, o Options) (*Dir, error) {
	services, hosts := o.Services, o.Hosts
	for _, s := range services {
		if err := events.ValidateService(s); err != nil {
			return nil, fmt.Errorf("services: %w", err)
		}
	}
	for _, s := range o.Unscoped {
		if !slices.Contains(services, s) {
			return nil, fmt.Errorf("unscoped service %q is not one of the services %v", s, services)
		}
	}
	if o.HashCost != 0 && (o.HashCost < bcrypt.MinCost || o.HashCost > bcrypt.MaxCost) {
		return nil, fmt.Errorf("hash cost %d is out of bcrypt's range %d..%d", o.HashCost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, dirMode); err != nil {
		return nil, err
	}
	// MkdirAll leaves a directory that was there as it was.
	if err := os.Chmod(abs, dirMode); err != nil {
		return nil, err
	}
	d := &Dir{Path: abs}
	write := func(name string, data []byte) error { return writeFile(abs, name, data) }
	if err := WriteTLS(abs, hosts); err != nil {
		return nil, err
	}
	if o.Identities {
		if err := writeIdentities(abs, services); err != nil {
			return nil, err
		}
	}
	rs := roleTable(o)
	hashed := map[string]string{}
	for _, r := range rs {
		pw, err := password()
		if err != nil {
			return nil, err
		}
		cost := cmp.Or(o.HashCost, 11)
		if r.Name == roles.CalloutUser().Name {
			// The callout's connect is the one every identity waits for
			// after a restart; its password is 192 random bits, which no
			// hash cost makes harder to guess.
			cost = bcrypt.MinCost
		}
		h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
		if err != nil {
			return nil, fmt.Errorf("hash a password: %w", err)
		}
		hashed[r.Name] = string(h)
		d.Users = append(d.Users, User{Name: r.Name, Password: pw, InboxPrefix: r.InboxPrefix()})
	}
	if err := writeUsers(d, rs, o, hashed); err != nil {
		return nil, err
	}
	token, err := password()
	if err != nil {
		return nil, err
	}
	if err := write(ConsoleTokenFile, []byte(token+"\n")); err != nil {
		return nil, err
	}
	if err := write(ConsoleTokensFile, []byte("write "+roles.HashToken(token)+"\n")); err != nil {
		return nil, err
	}
	return d, nil
}

// writeUsers writes d's users' files (<user>.env, <user>.password) and
// auth.conf from the role table rs, with the users' passwords as hashed.
func writeUsers(d *Dir, rs []roles.Role, o Options, hashed map[string]string) error {
	for _, u := range d.Users {
		env := fmt.Sprintf("HAIL_NATS_USER=%s\nHAIL_NATS_PASSWORD=%s\nHAIL_NATS_TLS_CA=%s\nHAIL_NATS_INBOX_PREFIX=%s\n", u.Name, u.Password, d.File(CAFile), u.InboxPrefix)
		if svc, ok := strings.CutPrefix(u.Name, "svc-"); ok {
			// An SDK instance (services/echo) run with this file announces
			// as its user may hear.
			env += fmt.Sprintf("HAIL_SCOPED=%t\n", !slices.Contains(o.Unscoped, svc))
		}
		if err := writeFile(d.Path, u.Name+".env", []byte(env)); err != nil {
			return err
		}
		if err := writeFile(d.Path, u.Name+".password", []byte(u.Password)); err != nil {
			return err
		}
	}
	conf, err := roles.AuthConf(rs, hashed)
	if err != nil {
		return err
	}
	if o.Identities {
		ids, err := ReadIdentities(d.Path)
		if err != nil {
			return err
		}
		pub, err := ids.Issuer.PublicKey()
		if err != nil {
			return fmt.Errorf("credentials %s: %w", d.Path, err)
		}
		names := make([]string, len(rs))
		for i, r := range rs {
			names[i] = r.Name
		}
		conf += roles.CalloutConf(pub, roles.Account, names)
	}
	return writeFile(d.Path, AuthConfFile, []byte(conf))
}

// WriteTLS writes a private CA (CAFile, CAKeyFile) and a server
// certificate it signed for hosts, IPs and names (ServerCertFile,
// ServerKeyFile), into dir, which must exist: the TLS half of a set, which
// tests of TLS use alone.
func WriteTLS(dir string, hosts []string) error {
	caPEM, caKeyPEM, certPEM, keyPEM, err := certificates(hosts)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{CAFile, caPEM}, {CAKeyFile, caKeyPEM}, {ServerCertFile, certPEM}, {ServerKeyFile, keyPEM}} {
		if err := writeFile(dir, f.name, f.data); err != nil {
			return err
		}
	}
	return nil
}

// dirMode is a set's directory's: only its owner may list or enter it.
const dirMode = 0o700

// fileMode is what a file of a set may be: the certificates are public,
// everything else (keys, passwords, tokens, the hashes) its owner's alone.
func fileMode(name string) os.FileMode {
	if name == CAFile || name == ServerCertFile {
		return 0o644
	}
	return 0o600
}

// writeFile writes a file of a set with its mode, also when it was there
// (os.WriteFile keeps an existing file's mode).
func writeFile(dir, name string, data []byte) error {
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, fileMode(name)); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Chmod(path, fileMode(name)); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// restrict gives a set that is kept the modes Write gives a new one.
func restrict(d *Dir) error {
	if err := os.Chmod(d.Path, dirMode); err != nil {
		return fmt.Errorf("credentials %s: %w", d.Path, err)
	}
	names := []string{CAFile, CAKeyFile, ServerCertFile, ServerKeyFile, AuthConfFile, ConsoleTokenFile, ConsoleTokensFile}
	for _, u := range d.Users {
		names = append(names, u.Name+".env", u.Name+".password")
	}
	names = append(names, CalloutIssuerFile)
	secrets, _ := filepath.Glob(d.File(SecretFile("*")))
	for _, f := range secrets {
		names = append(names, filepath.Base(f))
	}
	for _, name := range names {
		// A set written before a file was part of it lacks it.
		if err := os.Chmod(d.File(name), fileMode(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("credentials %s: %w", d.Path, err)
		}
	}
	return nil
}

// Ensure keeps the set in dir if it is complete (every file, a user and
// a hash for each role of the table), so that restarts keep their
// passwords, or writes a new one in its place.
//
// A kept set's auth.conf (and its users' files) is written again from
// the role table as it is now, with the passwords' hashes it holds, so a
// region that keeps its credentials across an upgrade gets the new
// permissions (the deny rules, scoped-only service users) with them.
func Ensure(dir string, o Options) (d *Dir, kept bool, err error) {
	if d, err := keep(dir, o); err == nil {
		return d, true, nil
	}
	d, err = Write(dir, o)
	return d, false, err
}

// keep is the set in dir, its users' files and auth.conf written again
// from the role table for o, or an error when the set is not complete:
// a file missing, or a role of the table without a user and a hash.
func keep(dir string, o Options) (*Dir, error) {
	old, err := Read(dir)
	if err != nil {
		return nil, err
	}
	conf, err := os.ReadFile(old.File(AuthConfFile))
	if err != nil {
		return nil, err
	}
	stored := hashes(string(conf))
	if o.Identities {
		if _, err := ReadIdentities(old.Path); err != nil {
			return nil, err
		}
		// A service added gets its secret; the others keep theirs, or
		// every instance of theirs would be locked out.
		if err := writeSecrets(old.Path, o.Services, true); err != nil {
			return nil, err
		}
	}
	rs := roleTable(o)
	d := &Dir{Path: old.Path}
	for _, r := range rs {
		u, ok := old.User(r.Name)
		if !ok || stored[r.Name] == "" {
			return nil, fmt.Errorf("credentials %s: no user %s", old.Path, r.Name)
		}
		u.InboxPrefix = r.InboxPrefix()
		d.Users = append(d.Users, u)
	}
	if err := writeUsers(d, rs, o, stored); err != nil {
		return nil, err
	}
	if err := restrict(d); err != nil {
		return nil, err
	}
	return d, nil
}

// userHash is one user of an auth.conf AuthConf wrote: its name and its
// password's hash, each a quoted string.
var userHash = regexp.MustCompile(`\{user: ("(?:[^"\\]|\\.)*"), password: ("(?:[^"\\]|\\.)*")`)

// hashes are the passwords' hashes an auth.conf holds, by user.
func hashes(conf string) map[string]string {
	out := map[string]string{}
	for _, m := range userHash.FindAllStringSubmatch(conf, -1) {
		name, err1 := strconv.Unquote(m[1])
		hash, err2 := strconv.Unquote(m[2])
		if err1 == nil && err2 == nil {
			out[name] = hash
		}
	}
	return out
}

// Read reads a directory Write wrote, or says what is missing.
func Read(dir string) (*Dir, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	d := &Dir{Path: abs}
	for _, name := range []string{CAFile, ServerCertFile, ServerKeyFile, AuthConfFile, ConsoleTokensFile} {
		if _, err := os.Stat(d.File(name)); err != nil {
			return nil, fmt.Errorf("credentials %s: %w", abs, err)
		}
	}
	envs, err := filepath.Glob(filepath.Join(abs, "*.env"))
	if err != nil {
		return nil, err
	}
	for _, p := range envs {
		u, err := readEnv(p)
		if err != nil {
			return nil, err
		}
		d.Users = append(d.Users, u)
	}
	if len(d.Users) == 0 {
		return nil, fmt.Errorf("credentials %s: no <user>.env files", abs)
	}
	return d, nil
}

func readEnv(path string) (User, error) {
	f, err := os.Open(path)
	if err != nil {
		return User{}, err
	}
	defer f.Close()
	var u User
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "HAIL_NATS_USER":
			u.Name = v
		case "HAIL_NATS_PASSWORD":
			u.Password = v
		case "HAIL_NATS_INBOX_PREFIX":
			u.InboxPrefix = v
		}
	}
	if err := sc.Err(); err != nil {
		return User{}, fmt.Errorf("read %s: %w", path, err)
	}
	if u.Name == "" || u.Password == "" {
		// The error names the file, never what it holds.
		return User{}, errors.New("credentials: " + path + " has no HAIL_NATS_USER or HAIL_NATS_PASSWORD")
	}
	return u, nil
}

// NewPassword is a new password as a set's are (services/nats's leaf
// user's).
func NewPassword() (string, error) { return password() }

// password is 24 random bytes, URL-safe.
func password() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// certificates makes a CA and a server certificate it signs for hosts
// (IPs and DNS names), valid for a year; PEM each.
func certificates(hosts []string) (caPEM, caKeyPEM, certPEM, keyPEM []byte, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	now := time.Now()
	serial := func() *big.Int { n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62)); return n }
	caTmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "hail CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.AddDate(1, 0, 0), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "hail NATS server"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.AddDate(1, 0, 0), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	for _, h := range hosts {
		if h = strings.TrimSpace(h); h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("server certificate: %w", err)
	}
	caKeyDER, err := x509.MarshalECPrivateKey(caKey)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: caKeyDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}
