package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/roles"
)

// secureInit writes what a secured region needs into a directory: a
// private CA, a server certificate for the hosts, an auth.conf with one
// user per role of package roles (random passwords, stored bcrypt-hashed),
// and one <user>.env per user with its credentials for the programs.
//
//	go run ./services/nats secure init --dir DIR --services echo,greeter [--hosts 127.0.0.1,localhost,nats-1]
func secureInit(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("secure init", flag.ContinueOnError)
	fs.SetOutput(out)
	dir := fs.String("dir", "", "directory to write into (created)")
	services := fs.String("services", "", "the services, comma-separated: one svc-<service> user each")
	hosts := fs.String("hosts", "127.0.0.1,localhost", "names and IPs the server certificate is for, comma-separated")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("secure init: --dir is required")
	}
	var svcs []string
	for _, s := range strings.Split(*services, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if err := events.ValidateService(s); err != nil {
			return fmt.Errorf("secure init: --services: %w", err)
		}
		svcs = append(svcs, s)
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fmt.Errorf("secure init: %w", err)
	}
	write := func(name string, data []byte, mode os.FileMode) error {
		if err := os.WriteFile(filepath.Join(*dir, name), data, mode); err != nil {
			return fmt.Errorf("secure init: write %s: %w", name, err)
		}
		return nil
	}
	caPEM, caKeyPEM, certPEM, keyPEM, err := certificates(strings.Split(*hosts, ","))
	if err != nil {
		return fmt.Errorf("secure init: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{"ca.pem", caPEM, 0o644}, {"ca-key.pem", caKeyPEM, 0o600}, {"server.pem", certPEM, 0o644}, {"server-key.pem", keyPEM, 0o600}} {
		if err := write(f.name, f.data, f.mode); err != nil {
			return err
		}
	}
	rs := roles.All(events.Subjects{}, svcs...)
	hashed := map[string]string{}
	caFile, _ := filepath.Abs(filepath.Join(*dir, "ca.pem"))
	for _, r := range rs {
		pw, err := password()
		if err != nil {
			return fmt.Errorf("secure init: %w", err)
		}
		h, err := bcrypt.GenerateFromPassword([]byte(pw), 11)
		if err != nil {
			return fmt.Errorf("secure init: hash a password: %w", err)
		}
		hashed[r.Name] = string(h)
		env := fmt.Sprintf("HAIL_NATS_USER=%s\nHAIL_NATS_PASSWORD=%s\nHAIL_NATS_TLS_CA=%s\nHAIL_NATS_INBOX_PREFIX=%s\n", r.Name, pw, caFile, r.InboxPrefix())
		if err := write(r.Name+".env", []byte(env), 0o600); err != nil {
			return err
		}
	}
	conf, err := roles.AuthConf(rs, hashed)
	if err != nil {
		return fmt.Errorf("secure init: %w", err)
	}
	if err := write("auth.conf", []byte(conf), 0o600); err != nil {
		return err
	}
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = r.Name + ".env"
	}
	fmt.Fprintf(out, "wrote %s: ca.pem, ca-key.pem, server.pem, server-key.pem, auth.conf, %s\n", *dir, strings.Join(names, ", "))
	fmt.Fprintf(out, "run the server with: --tls-cert %[1]s/server.pem --tls-key %[1]s/server-key.pem --auth-file %[1]s/auth.conf\n", *dir)
	return nil
}

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
