package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/credentials"
	"github.com/hailsd/hail/identity"
)

// secure init (--identities, the default) writes a secret per service (0600, the secret
// alone on one line) and admin.env instead of svc-<S> users; the server
// run with its auth.conf runs the callout, so an identity gets in with its
// service's secret and its role holds; admin and the static roles keep
// their passwords.
func TestSecureInitIdentities(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secure")
	var out strings.Builder
	if err := run(t.Context(), []string{"secure", "init", "--dir", dir, "--services", "echo,greeter", "--identities", "--hash-cost", "4"}, nil, &out); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"svc-echo.secret", "svc-greeter.secret", "admin.env", "admin.password", credentials.CalloutIssuerFile, "callout.password"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	for _, f := range []string{"svc-echo.env", "svc-echo.password"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("%s written: no shared service users with identities", f)
		}
	}
	raw, err := os.ReadFile(filepath.Join(dir, "svc-echo.secret"))
	if err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimSuffix(string(raw), "\n")
	if secret == "" || strings.ContainsAny(secret, " \n\t") {
		t.Fatalf("svc-echo.secret is not a secret alone on one line: %d bytes", len(raw))
	}
	conf, _ := os.ReadFile(filepath.Join(dir, "auth.conf"))
	if strings.Contains(string(conf), secret) || !strings.Contains(string(conf), "auth_callout") {
		t.Error("auth.conf holds a service's secret, or no auth_callout")
	}

	url := serveSecure(t, dir)
	ca := nats.RootCAs(filepath.Join(dir, "ca.pem"))
	id, err := identity.New()
	if err != nil {
		t.Fatal(err)
	}
	var nc *nats.Conn
	bustest.Eventually(t, 15*time.Second, func() error { // the server starting
		nc, err = nats.Connect(url, append(id.Options("echo", secret), ca, nats.MaxReconnects(0))...)
		return err
	})
	defer nc.Close()
	if _, err := nc.QueueSubscribe("hail.svc.echo.*", "hail.echo", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("hail.announce.echo."+id.ID(), []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatalf("the identity's own subjects: %v", err)
	}
	if err := nc.LastError(); err != nil {
		t.Fatalf("the identity's own subjects refused: %v", err)
	}
	if other, err := nats.Connect(url, append(id.Options("greeter", secret), ca, nats.MaxReconnects(0))...); err == nil {
		other.Close()
		t.Error("echo's secret let in as greeter")
	}
	for _, role := range []string{"admin", "discovery"} {
		e := envFile(t, filepath.Join(dir, role+".env"))
		c, err := nats.Connect(url, nats.UserInfo(e["HAIL_NATS_USER"], e["HAIL_NATS_PASSWORD"]), ca, nats.MaxReconnects(0))
		if err != nil {
			t.Errorf("%s refused: %v", role, err)
			continue
		}
		c.Close()
	}
}
