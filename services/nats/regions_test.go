package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/bus/embedded"
	"github.com/hailsd/hail/internal/testlog"
)

// serveRegion runs the program with args until the test ends (or it stops
// by itself: its error is sent on the channel returned).
func serveRegion(t *testing.T, args ...string) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append(args, "--store-dir", t.TempDir()), func(string) string { return "" }, io.Discard)
	}()
	t.Cleanup(cancel)
	return done
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports, err := embedded.FreeLoopbackPorts(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

// leafz is the number of leafnode links the monitoring port reports.
func leafz(monitor int) (int, error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/leafz", monitor))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var lz struct {
		Leafnodes int `json:"leafnodes"`
	}
	return lz.Leafnodes, json.NewDecoder(resp.Body).Decode(&lz)
}

// Two regions of the program: us links to eu, and each JetStream answers
// in its own domain from the other region.
func TestRegionsLinked(t *testing.T) {
	p := freePorts(t, 3)
	serveRegion(t, "--name", "eu-1", "--region", "eu", "--listen", fmt.Sprintf("127.0.0.1:%d", p[0]), "--leafnodes-listen", fmt.Sprintf("127.0.0.1:%d", p[2]))
	serveRegion(t, "--name", "us-1", "--region", "us", "--listen", fmt.Sprintf("127.0.0.1:%d", p[1]), "--leafnodes-remotes", fmt.Sprintf("nats-leaf://127.0.0.1:%d", p[2]))
	bustest.Eventually(t, 30*time.Second, func() error {
		c, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", p[0]))
		if err != nil {
			return err
		}
		defer c.Close()
		for _, domain := range []string{"eu", "us"} {
			m, err := c.Request("$JS."+domain+".API.INFO", nil, time.Second)
			if err != nil {
				return fmt.Errorf("JetStream of %s from eu: %w", domain, err)
			}
			if !strings.Contains(string(m.Data), `"domain":"`+domain+`"`) {
				return fmt.Errorf("$JS.%s.API.INFO: %s", domain, m.Data)
			}
		}
		return nil
	})
}

// Two regions of one name refuse to join: the server that made the link
// stops with an error that says so; the one that accepted it logs the
// fault and serves on.
func TestSameRegionRefused(t *testing.T) {
	p := freePorts(t, 3)
	var acceptLog testlog.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	accepted := make(chan error, 1)
	go func() {
		accepted <- run(ctx, []string{"--name", "eu-1", "--region", "eu", "--listen", fmt.Sprintf("127.0.0.1:%d", p[0]),
			"--leafnodes-listen", fmt.Sprintf("127.0.0.1:%d", p[2]), "--store-dir", t.TempDir()}, func(string) string { return "" }, &acceptLog)
	}()
	defer func() {
		cancel()
		if err := <-accepted; err != nil {
			t.Errorf("eu-1: %v", err)
		}
	}()
	joiner := serveRegion(t, "--name", "eu-2", "--region", "eu", "--listen", fmt.Sprintf("127.0.0.1:%d", p[1]), "--leafnodes-remotes", fmt.Sprintf("nats-leaf://127.0.0.1:%d", p[2]))
	select {
	case err := <-joiner:
		if !errors.Is(err, embedded.ErrSameRegion) {
			t.Fatalf("eu-2 stopped with %v, want ErrSameRegion", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("eu-2 still runs joined to a region of its own name")
	}
	bustest.Eventually(t, 30*time.Second, func() error {
		if !strings.Contains(acceptLog.String(), "a region of the same name is joined") {
			return errors.New("eu-1 has not logged the same-named region")
		}
		return nil
	})
	select {
	case err := <-accepted:
		t.Fatalf("eu-1 stopped: %v", err)
	default:
	}
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", p[0]))
	if err != nil {
		t.Fatalf("eu-1 no longer serves: %v", err)
	}
	nc.Close()
}

// On a secured server (secure init's files, with identities, the
// default, or with shared service users) the regions' link authenticates
// as the leaf user over TLS.
func TestSecuredRegionsLinked(t *testing.T) {
	for _, identities := range []bool{false, true} {
		t.Run(fmt.Sprintf("identities=%v", identities), func(t *testing.T) { securedRegionsLinked(t, identities) })
	}
}

func securedRegionsLinked(t *testing.T, identities bool) {
	dir := filepath.Join(t.TempDir(), "secure")
	args := []string{"secure", "init", "--dir", dir, "--services", "echo", "--hash-cost", "4"}
	if !identities {
		args = append(args, "--shared-service-users")
	}
	if err := run(t.Context(), args, nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	secured := []string{"--tls-cert", filepath.Join(dir, "server.pem"), "--tls-key", filepath.Join(dir, "server-key.pem"), "--tls-ca", filepath.Join(dir, "ca.pem"), "--auth-file", filepath.Join(dir, "auth.conf")}
	p := freePorts(t, 5)
	serveRegion(t, append([]string{"--name", "eu-1", "--region", "eu", "--listen", fmt.Sprintf("127.0.0.1:%d", p[0]), "--monitor-port", fmt.Sprint(p[3]),
		"--leafnodes-listen", fmt.Sprintf("127.0.0.1:%d", p[2])}, secured...)...)
	serveRegion(t, append([]string{"--name", "us-1", "--region", "us", "--listen", fmt.Sprintf("127.0.0.1:%d", p[1]), "--monitor-port", fmt.Sprint(p[4]),
		"--leafnodes-remotes", fmt.Sprintf("nats-leaf://127.0.0.1:%d", p[2])}, secured...)...)
	for _, mon := range []int{p[3], p[4]} {
		bustest.Eventually(t, 30*time.Second, func() error {
			n, err := leafz(mon)
			if err == nil && n != 1 {
				err = fmt.Errorf("%d leafnode links", n)
			}
			return err
		})
	}
}

// With secure init --identities (the server's auth callout), the link
// checker still gets in: a region of the server's own name is refused.
func TestSameRegionRefusedWithIdentities(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secure")
	if err := run(t.Context(), []string{"secure", "init", "--dir", dir, "--services", "echo", "--hash-cost", "4", "--identities"}, nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	secured := []string{"--tls-cert", filepath.Join(dir, "server.pem"), "--tls-key", filepath.Join(dir, "server-key.pem"), "--tls-ca", filepath.Join(dir, "ca.pem"), "--auth-file", filepath.Join(dir, "auth.conf")}
	p := freePorts(t, 3)
	serveRegion(t, append([]string{"--name", "eu-1", "--region", "eu", "--listen", fmt.Sprintf("127.0.0.1:%d", p[0]), "--leafnodes-listen", fmt.Sprintf("127.0.0.1:%d", p[2])}, secured...)...)
	j := serveRegion(t, append([]string{"--name", "eu-2", "--region", "eu", "--listen", fmt.Sprintf("127.0.0.1:%d", p[1]), "--leafnodes-remotes", fmt.Sprintf("nats-leaf://127.0.0.1:%d", p[2])}, secured...)...)
	select {
	case err := <-j:
		if !errors.Is(err, embedded.ErrSameRegion) {
			t.Fatalf("eu-2: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("not refused")
	}
}
