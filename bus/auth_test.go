package bus_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/config"
	"github.com/hailsd/hail/internal/testlog"
)

func runAuthServer(t *testing.T, o *server.Options) *server.Server {
	t.Helper()
	o.Host, o.Port, o.NoLog, o.NoSigs = "127.0.0.1", -1, true, true
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// connect connects with a config section, as every program does.
func connect(t *testing.T, n config.NATS) (*testlog.Buffer, error) {
	t.Helper()
	opts, err := n.Options()
	if err != nil {
		return nil, err
	}
	logs := &testlog.Buffer{}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	nc, err := bus.Connect(ctx, bus.ConnectOptions{URL: n.URL, Name: "test", Logger: slog.New(slog.NewTextHandler(logs, nil)), Extra: opts})
	if err == nil {
		nc.Close()
	}
	return logs, err
}

// Credentials work, and a refusal is said once with the server's reason
// and returned at once, without the secret.
func TestConnectWithCredentials(t *testing.T) {
	users := runAuthServer(t, &server.Options{Users: []*server.User{{Username: "svc-echo", Password: "s3cret"}}})
	tokens := runAuthServer(t, &server.Options{Authorization: "t0ken"})
	url := func(s *server.Server) string { return s.ClientURL() }
	if _, err := connect(t, config.NATS{URL: url(users), User: "svc-echo", Password: "s3cret"}); err != nil {
		t.Errorf("right password: %v", err)
	}
	if _, err := connect(t, config.NATS{URL: url(tokens), Token: "t0ken"}); err != nil {
		t.Errorf("right token: %v", err)
	}
	for name, n := range map[string]config.NATS{
		"wrong password": {URL: url(users), User: "svc-echo", Password: "wrong-hunter2"},
		"no credentials": {URL: url(users)},
		"wrong token":    {URL: url(tokens), Token: "wrong-hunter2"},
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			logs, err := connect(t, n)
			if err == nil || !strings.Contains(err.Error(), "refused") || !strings.Contains(err.Error(), "uthorization") {
				t.Fatalf("error %v, want a refusal that says why", err)
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("the refusal took %v", time.Since(start))
			}
			if strings.Count(logs.String(), "NATS refused this program") != 1 || strings.Contains(logs.String()+err.Error(), "hunter2") {
				t.Errorf("logs:\n%s\nerror: %v", logs.String(), err)
			}
		})
	}
}

// A server whose certificate a private CA signed: trusted with nats.tls.ca,
// refused (saying why) without it.
func TestConnectWithPrivateCA(t *testing.T) {
	dir := t.TempDir()
	caFile, tlsCfg := privateCA(t, dir)
	s := runAuthServer(t, &server.Options{TLS: true, TLSConfig: tlsCfg, TLSTimeout: 2})
	u := fmt.Sprintf("tls://127.0.0.1:%d", s.Addr().(*net.TCPAddr).Port)
	if _, err := connect(t, config.NATS{URL: u, TLS: config.NATSTLS{CA: caFile}}); err != nil {
		t.Errorf("with the CA: %v", err)
	}
	logs, err := connect(t, config.NATS{URL: u})
	if err == nil || !strings.Contains(err.Error(), "refused") || !strings.Contains(logs.String(), "x509") {
		t.Errorf("without the CA: %v\n%s", err, logs.String())
	}
}

// privateCA writes a CA's certificate to dir and returns its file and a
// server TLS config with a certificate it signed for 127.0.0.1.
func privateCA(t *testing.T, dir string) (string, *tls.Config) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hail test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "nats"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return caFile, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}}, MinVersion: tls.VersionTLS12}
}
