package bus_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/config"
	"github.com/hailsd/hail/credentials"
	"github.com/hailsd/hail/internal/testlog"
)

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
	users := bustest.RunServerWith(t, func(o *server.Options) { o.Users = []*server.User{{Username: "svc-echo", Password: "s3cret"}} })
	tokens := bustest.RunServerWith(t, func(o *server.Options) { o.Authorization = "t0ken" })
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
	s := bustest.RunServerWith(t, func(o *server.Options) { o.TLS, o.TLSConfig, o.TLSTimeout = true, tlsCfg, 2 })
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
	if err := credentials.WriteTLS(dir, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, credentials.ServerCertFile), filepath.Join(dir, credentials.ServerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, credentials.CAFile), &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}
