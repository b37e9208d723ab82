// Package identitytest runs a region whose instances connect as their own
// identities (PROTOCOL v1.6) for tests: one embedded JetStream server
// configured with the set secure init writes by default (the auth.conf
// with its auth_callout, the static roles as auth_users) and the auth
// callout running in process, as services/nats runs it. Restart stops the
// server and starts it again on the same port and store.
package identitytest

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/bus/embedded"
	"github.com/hailsd/hail/callout"
	"github.com/hailsd/hail/credentials"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
)

// Region is the server, its credentials and its callout.
type Region struct {
	T   testing.TB
	Dir *credentials.Dir
	URL string

	port      int
	store     string
	configure func(*server.Options)

	mu          sync.Mutex
	srv         *server.Server
	stopCallout func()
	refused     refusals
}

// refusals is a server log handler that counts the connections the
// server refused (its "authentication error" lines: a wrong secret, or
// an authorization the callout did not answer in time).
type refusals struct{ n atomic.Int64 }

func (r *refusals) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (r *refusals) Handle(_ context.Context, rec slog.Record) error {
	if strings.Contains(strings.ToLower(rec.Message), "authentication error") {
		r.n.Add(1)
	}
	return nil
}
func (r *refusals) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *refusals) WithGroup(string) slog.Handler      { return r }

// Refused is how many connections the server has refused since the
// region started, across restarts.
func (r *Region) Refused() int64 { return r.refused.n.Load() }

// New starts a region whose services (their secrets) are services.
func New(t testing.TB, services ...string) *Region {
	t.Helper()
	d, err := credentials.Write(filepath.Join(t.TempDir(), "secure"), credentials.Options{Services: services,
		Hosts: []string{"127.0.0.1"}, HashCost: credentials.MinHashCost, Identities: true})
	if err != nil {
		t.Fatal(err)
	}
	configure, err := embedded.Security{AuthFile: d.File(credentials.AuthConfFile)}.Configure()
	if err != nil {
		t.Fatal(err)
	}
	r := &Region{T: t, Dir: d, port: bustest.FreePort(t), store: t.TempDir(), configure: configure}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *Region) start() {
	r.T.Helper()
	c, err := callout.NewInProcess(r.Dir.Path, nil)
	if err != nil {
		r.T.Fatalf("the auth callout: %v", err)
	}
	// The callout listens before the server does (BeforeClients), as in
	// services/nats.
	var stop func()
	srv, err := embedded.StartServer(embedded.ServerOptions{Name: "identities", Port: r.port, StoreDir: r.store, Configure: r.configure,
		Logger: slog.New(&r.refused), BeforeClients: func(srv *server.Server) (err error) {
			stop, err = c.Start(srv)
			return err
		}})
	if err != nil {
		r.T.Fatalf("start NATS server and its auth callout: %v", err)
	}
	r.mu.Lock()
	r.srv, r.stopCallout = srv, stop
	r.URL = srv.ClientURL()
	r.mu.Unlock()
}

func (r *Region) stop() {
	r.mu.Lock()
	srv, stop := r.srv, r.stopCallout
	r.srv, r.stopCallout = nil, nil
	r.mu.Unlock()
	if stop != nil {
		stop()
	}
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// Server is the running server.
func (r *Region) Server() *server.Server {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.srv
}

// Restart shuts the server down (its clients see "Server Shutdown") and
// starts it again on the same port and store, with its callout; it
// returns once the server is ready for clients.
func (r *Region) Restart() {
	r.T.Helper()
	r.stop()
	r.start()
}

// Secret is service's bootstrap secret.
func (r *Region) Secret(service string) string {
	r.T.Helper()
	b, err := os.ReadFile(r.Dir.File(credentials.SecretFile(service)))
	if err != nil {
		r.T.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// SecretFile is where service's secret is.
func (r *Region) SecretFile(service string) string {
	return r.Dir.File(credentials.SecretFile(service))
}

// Role are the options that connect as the static role name (discovery,
// router, console, caller, admin) with its password and inbox prefix.
func (r *Region) Role(name string) []nats.Option {
	r.T.Helper()
	u, ok := r.Dir.User(name)
	if !ok {
		r.T.Fatalf("no user %s", name)
	}
	return []nats.Option{nats.UserInfo(u.Name, u.Password), nats.CustomInboxPrefix(u.InboxPrefix)}
}

// Connect connects as the static role name; it reconnects for ever, and
// is closed when the test ends.
func (r *Region) Connect(name string, opts ...nats.Option) *nats.Conn {
	r.T.Helper()
	nc, err := nats.Connect(r.URL, append(append(r.Role(name), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond)), opts...)...)
	if err != nil {
		r.T.Fatalf("connect as %s: %v", name, err)
	}
	r.T.Cleanup(nc.Close)
	return nc
}

// Discovery runs a discovery node as the discovery role until the test
// ends, and returns once it serves, with the buckets it made.
func (r *Region) Discovery(cfg discovery.Config) (*discovery.Node, *bus.Buckets) {
	r.T.Helper()
	nc := r.Connect(events.RoleDiscovery)
	kv, err := bus.EnsureBuckets(context.Background(), nc, bus.BucketOptions{Subjects: cfg.Subjects})
	if err != nil {
		r.T.Fatal(err)
	}
	n, err := discovery.New(nc, kv, cfg)
	if err != nil {
		r.T.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	r.T.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			r.T.Errorf("discovery node: %v", err)
		}
	})
	select {
	case <-n.Serving():
	case err := <-done:
		done <- err // for the cleanup, which waits on it
		r.T.Fatalf("discovery node stopped before serving: %v", err)
	case <-time.After(30 * time.Second):
		r.T.Fatal("discovery node not serving within 30s")
	}
	return n, kv
}
