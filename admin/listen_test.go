package admin_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hailsd/hail/admin"
	"github.com/hailsd/hail/config"
	"github.com/hailsd/hail/credentials"
)

// selfSigned writes a certificate for 127.0.0.1 (signed by a private CA)
// and its key, and returns their paths and a pool that trusts it.
func selfSigned(t *testing.T) (cert, key string, pool *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	if err := credentials.WriteTLS(dir, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(dir, credentials.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("no CA certificate in " + credentials.CAFile)
	}
	return filepath.Join(dir, credentials.ServerCertFile), filepath.Join(dir, credentials.ServerKeyFile), pool
}

func TestListenServesHTTPSWithACertificate(t *testing.T) {
	cert, key, pool := selfSigned(t)
	l, err := admin.Listen(config.Listener{Addr: "127.0.0.1:0", TLS: config.HTTPTLS{Cert: cert, Key: key}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- admin.Serve(ctx, l, admin.Handler(nil, func() bool { return true }, nil, false), slog.New(slog.DiscardHandler))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get("https://" + l.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz over TLS: %d", resp.StatusCode)
	}
	// Plain HTTP to a TLS port is answered 400 by net/http, never served.
	if resp, err := http.Get("http://" + l.Addr().String() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP was served on the HTTPS port")
		}
	}
}

func TestListenRefusesHalfATLSConfig(t *testing.T) {
	cert, key, _ := selfSigned(t)
	for _, tc := range []struct {
		name string
		tls  config.HTTPTLS
		want string
	}{
		{"a cert without its key", config.HTTPTLS{Cert: cert}, "both cert and key"},
		{"a missing key file", config.HTTPTLS{Cert: cert, Key: key + ".gone"}, "http.tls"},
		{"a key that is not a key", config.HTTPTLS{Cert: cert, Key: cert}, "http.tls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := admin.Listen(config.Listener{Addr: "127.0.0.1:0", TLS: tc.tls})
			if err == nil {
				l.Close()
				t.Fatal("listening")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}
