// Package bustest starts real NATS servers for tests: one embedded JetStream
// server, or an in-process cluster, each torn down with the test.
package bustest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/embedded"
	"github.com/hailsd/hail/roles"
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

// RunSecured runs a JetStream server whose only users are the roles rs,
// each with the password "pw-<role>", as `secure init` would make them.
func RunSecured(t testing.TB, rs ...roles.Role) *server.Server {
	t.Helper()
	var users []*server.User
	for _, r := range rs {
		p := &server.Permissions{Publish: &server.SubjectPermission{Allow: r.Publish}, Subscribe: &server.SubjectPermission{Allow: r.Subscribe}}
		if r.AllowResponses {
			p.Response = &server.ResponsePermission{MaxMsgs: server.DEFAULT_ALLOW_RESPONSE_MAX_MSGS, Expires: server.DEFAULT_ALLOW_RESPONSE_EXPIRATION}
		}
		users = append(users, &server.User{Username: r.Name, Password: "pw-" + r.Name, Permissions: p})
	}
	return RunServerWith(t, func(o *server.Options) { o.Users = users })
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

// ReconnectAfter is an Option for a connection that must reconnect only
// once lead has reconnected and the server has its subscriptions (or a
// minute has passed): after a server restart, a test's fake discovery
// (lead) is back before the instances announce their new conn. Without
// it, an instance back first finds no responders and backs off three
// heartbeat intervals, as it must, which a test with long intervals
// cannot wait for. It takes lead's reconnect handler.
func ReconnectAfter(lead *nats.Conn) nats.Option {
	back := make(chan struct{})
	var once sync.Once
	lead.SetReconnectHandler(func(c *nats.Conn) {
		// The flush's PONG comes after the server took the resent
		// subscriptions.
		if c.Flush() == nil {
			once.Do(func() { close(back) })
		}
	})
	return nats.CustomReconnectDelay(func(int) time.Duration {
		select {
		case <-back:
		case <-time.After(time.Minute):
		}
		return 20 * time.Millisecond
	})
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
// bind (embedded.FreeLoopbackPorts says how it is chosen), never the same
// one twice in a process.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		ports, err := embedded.FreeLoopbackPorts(1)
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := handedOut.LoadOrStore(ports[0], true); !dup {
			return ports[0]
		}
	}
	t.Fatal("FreePort: 100 ports in a row were handed out already")
	return 0
}

// handedOut are the ports FreePort gave in this process: ports are the
// process's (the machine's) to share, so one set for all its tests.
var handedOut sync.Map

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
