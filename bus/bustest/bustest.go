// Package bustest starts real NATS servers for tests: one embedded JetStream
// server, or an in-process cluster, each torn down with the test.
package bustest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/embedded"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// RunServer starts a single JetStream server on a free loopback port.
func RunServer(t testing.TB) *server.Server {
	t.Helper()
	return RunServerWith(t, nil)
}

// RunServerWith is RunServer with configure applied to the server's
// options first (users, TLS, authorization).
func RunServerWith(t testing.TB, configure func(*server.Options)) *server.Server {
	t.Helper()
	s, err := embedded.StartServer(embedded.ServerOptions{Name: "test", Port: -1, StoreDir: t.TempDir(), Configure: configure})
	if err != nil {
		t.Fatalf("start NATS server: %v", err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// RunCluster starts an n-node JetStream cluster and waits until it is ready.
func RunCluster(t testing.TB, n int) *embedded.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := embedded.StartCluster(ctx, "hailtest", n, t.TempDir())
	if err != nil {
		t.Fatalf("start %d-node cluster: %v", n, err)
	}
	t.Cleanup(c.Shutdown)
	return c
}

// RunPartitionableCluster is RunCluster with route proxies, so that the
// test can Cut a server off from the others and Heal it.
func RunPartitionableCluster(t testing.TB, n int) *embedded.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := embedded.StartPartitionableCluster(ctx, "hailtest", n, t.TempDir())
	if err != nil {
		t.Fatalf("start %d-node cluster: %v", n, err)
	}
	t.Cleanup(c.Shutdown)
	return c
}

// Connect opens a client connection that is closed with the test.
func Connect(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Buckets creates the hail buckets through nc.
func Buckets(t testing.TB, nc *nats.Conn) *bus.Buckets {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.EnsureBuckets(ctx, nc, bus.BucketOptions{})
	if err != nil {
		t.Fatalf("ensure buckets: %v", err)
	}
	return b
}

// Eventually polls check until it returns nil or timeout passes, then fails
// the test with the last error. This is nats-server's checkFor: a deadline
// on an observable condition instead of a sleep.
func Eventually(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	if err := Poll(timeout, check); err != nil {
		t.Fatal(err)
	}
}

// Poll is Eventually without a test: it returns the last error after timeout.
func Poll(timeout time.Duration, check func() error) error {
	return PollEvery(timeout, 10*time.Millisecond, check)
}

// PollEvery is Poll checking every interval: for checks that cost what
// they measure (a query over a large registry).
func PollEvery(timeout, interval time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", timeout, err)
		}
		time.Sleep(interval) // the polling interval, not a synchronisation
	}
}

// FreePort reserves a free loopback port and releases it for the test to
// bind; another process may take it in between, which shows as a bind
// error, not a hang. It is chosen below the kernel's ephemeral range: a
// port the kernel handed out would be given again as the source port of
// some outgoing connection (a test starts hundreds), and the program
// meant to listen on it would find it taken.
func FreePort(t testing.TB) int {
	t.Helper()
	low, high := 15000, ephemeralLow()
	for range 200 {
		port := low + rand.N(high-low)
		if _, dup := handedOut.LoadOrStore(port, true); dup {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		l.Close()
		return port
	}
	t.Fatal("no free loopback port below the ephemeral range after 200 tries")
	return 0
}

// handedOut are the ports FreePort gave in this process: ports are the
// process's (the machine's) to share, so one set for all its tests.
var handedOut sync.Map

// ephemeralLow is where the kernel's ephemeral ports start (Linux; 32768
// elsewhere, the common default).
func ephemeralLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(data)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 16000 {
				return n
			}
		}
	}
	return 32768
}

// ReplaceFile writes text to path whole, through a temporary file renamed
// into place, as editors and ConfigMap updates do.
func ReplaceFile(t testing.TB, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
