package roles_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/bus/embedded"
	"github.com/hailsd/hail/console"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/echo"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/instance"
	"github.com/hailsd/hail/internal/testlog"
	"github.com/hailsd/hail/roles"
	"github.com/hailsd/hail/router"
)

var subjects events.Subjects

// secured runs a JetStream server whose only users are hail's roles, from
// the auth.conf the table renders (as secure init writes it, with the
// passwords "pw-<role>" in the clear, which nats-server takes as they are).
func secured(t *testing.T, rs ...roles.Role) *server.Server {
	t.Helper()
	passwords := map[string]string{}
	for _, r := range rs {
		passwords[r.Name] = "pw-" + r.Name
	}
	conf, err := roles.AuthConf(rs, passwords)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "auth.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	configure, err := embedded.Security{AuthFile: path}.Configure()
	if err != nil {
		t.Fatal(err)
	}
	return bustest.RunServerWith(t, configure)
}

// as connects as role, counting the permission violations its
// connection is told of.
type as struct {
	nc         *nats.Conn
	mu         sync.Mutex
	violations []string
}

func connectAs(t *testing.T, s *server.Server, r roles.Role) *as {
	t.Helper()
	a := &as{}
	logs := &testlog.Buffer{}
	nc, err := bus.Connect(t.Context(), bus.ConnectOptions{URL: s.ClientURL(), Name: r.Name, Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Extra: []nats.Option{nats.UserInfo(r.Name, "pw-"+r.Name), nats.CustomInboxPrefix(r.InboxPrefix()),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				if strings.Contains(err.Error(), "ermissions") {
					a.mu.Lock()
					a.violations = append(a.violations, err.Error())
					a.mu.Unlock()
				}
			})}})
	if err != nil {
		t.Fatalf("connect as %s: %v", r.Name, err)
	}
	t.Cleanup(nc.Close)
	a.nc = nc
	return a
}

func (a *as) count() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.violations...)
}

// The programs run under their roles, each with its own inbox prefix: a
// routed request works end to end, and no connection meets a single
// permission violation. Then every forbidden action is refused.
func TestProgramsUnderLeastPrivilege(t *testing.T) {
	disc, rt, caller, svc, con := roles.Discovery(subjects), roles.Router(subjects), roles.Caller(subjects), roles.Service(subjects, "echo"), roles.Console(subjects)
	legacy := roles.ServiceUnscoped(subjects, "legacy")
	s := secured(t, disc, rt, caller, svc, con, legacy)

	d := connectAs(t, s, disc)
	kv, err := bus.EnsureBuckets(t.Context(), d.nc, bus.BucketOptions{})
	if err != nil {
		t.Fatalf("discovery creates the buckets: %v", err)
	}
	node, err := discovery.New(d.nc, kv, discovery.Config{})
	if err != nil {
		t.Fatal(err)
	}
	run(t, "discovery", node.Run)
	<-node.Serving()

	r := connectAs(t, s, rt)
	rtr, err := router.New(r.nc, router.Config{StatsInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	run(t, "router", rtr.Run)

	e := connectAs(t, s, svc)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// A scoped instance (v1.2), as svc-<S> is by default, and an unscoped
	// one of a service whose user secure init was told is unscoped.
	scoped, err := echo.Start(ctx, e.nc, instance.Config{Service: "echo", HeartbeatInterval: 200 * time.Millisecond, Scoped: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = scoped.Shutdown(context.Background()) })
	l := connectAs(t, s, legacy)
	inst, err := echo.Start(ctx, l.nc, instance.Config{Service: "legacy", HeartbeatInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inst.Shutdown(context.Background()) })

	// The console, on a connection of its own under its role, reads the
	// region.
	cn := connectAs(t, s, con)
	ckv, err := bus.OpenBuckets(t.Context(), cn.nc, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("console opens the buckets: %v", err)
	}
	region := console.NewRegion(cn.nc, ckv, console.RegionConfig{})
	run(t, "console", region.Run)
	select {
	case <-region.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("console not ready under its role")
	}

	c := connectAs(t, s, caller)
	bustest.Eventually(t, 10*time.Second, func() error {
		for _, service := range []string{"echo", "legacy"} {
			m, err := c.nc.Request(subjects.Route(service, "say"), []byte("hi"), time.Second)
			if err != nil {
				return fmt.Errorf("%s: %w", service, err)
			}
			if string(m.Data) != "hi" {
				return fmt.Errorf("%s: routed answer %q %v", service, m.Data, m.Header)
			}
		}
		return nil
	})
	if _, err := c.nc.Request(subjects.DiscoveryInstances(), []byte(`{"service":"echo"}`), time.Second); err != nil {
		t.Errorf("caller's query: %v", err)
	}
	// A heartbeat round answered under the roles (discovery's request, the
	// instance's reply), so its permissions are exercised too.
	bustest.Eventually(t, 10*time.Second, func() error {
		for _, id := range []string{inst.ID(), scoped.ID()} {
			if _, ok := node.RTTs()[id]; !ok {
				return fmt.Errorf("no heartbeat of %s answered yet", id)
			}
		}
		return nil
	})
	if _, err := region.SetRoute(t.Context(), "echo", []byte(`{"strategy":"hash"}`)); err != nil {
		t.Errorf("console writes a route: %v", err)
	}
	for name, a := range map[string]*as{"discovery": d, "router": r, "svc-echo": e, "svc-legacy": l, "caller": c, "console": cn} {
		if v := a.count(); len(v) > 0 {
			t.Errorf("%s met %d permission violations: %v", name, len(v), v)
		}
	}

	// Each forbidden action, as each role, is refused.
	for _, tt := range []struct {
		who  *as
		role string
		do   func(nc *nats.Conn) error
		what string
	}{
		{e, "svc-echo", func(nc *nats.Conn) error { return nc.Publish(subjects.Health("echo", "x"), []byte("{}")) }, "publish a health event"},
		{e, "svc-echo", func(nc *nats.Conn) error { return nc.Publish("$KV.hail_instances.echo.x", []byte("{}")) }, "write a bucket"},
		{e, "svc-echo", func(nc *nats.Conn) error { return nc.Publish(subjects.Announce("other"), []byte("{}")) }, "announce another service"},
		{e, "svc-echo", func(nc *nats.Conn) error { _, err := nc.Subscribe(subjects.RouteAll(), func(*nats.Msg) {}); return err }, "subscribe hail.route.>"},
		{e, "svc-echo", func(nc *nats.Conn) error { _, err := nc.Subscribe("_INBOX.>", func(*nats.Msg) {}); return err }, "subscribe _INBOX.>"},
		{e, "svc-echo", func(nc *nats.Conn) error {
			_, err := nc.Subscribe(subjects.Svc("other", "say"), func(*nats.Msg) {})
			return err
		}, "serve another service"},
		{e, "svc-echo", func(nc *nats.Conn) error {
			_, err := nc.Subscribe(subjects.HeartbeatOf("other", "*", true), func(*nats.Msg) {})
			return err
		}, "hear another service's scoped heartbeats"},
		{e, "svc-echo", func(nc *nats.Conn) error {
			_, err := nc.Subscribe(subjects.InstOf("other", "*", "*", true), func(*nats.Msg) {})
			return err
		}, "take another service's scoped instance requests"},
		{c, "caller", func(nc *nats.Conn) error { return nc.Publish(subjects.Announce("echo"), []byte("{}")) }, "announce"},
		{c, "caller", func(nc *nats.Conn) error { return nc.Publish("$KV.hail_config.route.echo", []byte("{}")) }, "write a bucket"},
		{r, "router", func(nc *nats.Conn) error { return nc.Publish("$JS.API.STREAM.DELETE.KV_hail_instances", nil) }, "delete the registry"},
		{r, "router", func(nc *nats.Conn) error { return nc.Publish("$KV.hail_instances.echo.x", []byte("{}")) }, "write the registry"},
		{cn, "console", func(nc *nats.Conn) error { return nc.Publish("$KV.hail_instances.echo.x", []byte("{}")) }, "write the registry"},
		{cn, "console", func(nc *nats.Conn) error { return nc.Publish(subjects.Announce("echo"), []byte("{}")) }, "announce"},
	} {
		before := len(tt.who.count())
		if err := tt.do(tt.who.nc); err != nil {
			t.Fatalf("%s %s: %v", tt.role, tt.what, err)
		}
		_ = tt.who.nc.Flush()
		bustest.Eventually(t, 2*time.Second, func() error {
			if len(tt.who.count()) == before {
				return fmt.Errorf("%s could %s", tt.role, tt.what)
			}
			return nil
		})
	}
}

func run(t *testing.T, name string, f func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: %v", name, err)
		}
	})
}

// svc-<S> is scoped-only: its own service's scoped subjects and none of
// the unscoped ones, where any service's unscoped instances would be; an
// unscoped svc-<S> has those instead, and no scoped subject at all.
func TestServiceScopedByDefault(t *testing.T) {
	unscoped := []string{subjects.Heartbeat("*"), subjects.Inst("*", "*")}
	scoped := []string{subjects.HeartbeatOf("echo", "*", true), subjects.InstOf("echo", "*", "*", true)}
	for _, tt := range []struct {
		role      roles.Role
		want, not []string
	}{
		{roles.Service(subjects, "echo"), scoped, unscoped},
		{roles.ServiceUnscoped(subjects, "echo"), unscoped, scoped},
	} {
		for _, s := range tt.not {
			if slices.Contains(tt.role.Subscribe, s) {
				t.Errorf("%v: %s may subscribe %s", tt.role.Subscribe, tt.role.Name, s)
			}
		}
		for _, s := range append(tt.want, subjects.Svc("echo", "*")) {
			if !slices.Contains(tt.role.Subscribe, s) {
				t.Errorf("%v: %s may not subscribe %s", tt.role.Subscribe, tt.role.Name, s)
			}
		}
	}
	all := roles.All(subjects, []string{"echo", "legacy"}, []string{"legacy"})
	if got := all[len(all)-1]; !slices.Contains(got.Subscribe, subjects.Heartbeat("*")) {
		t.Errorf("All made svc-legacy %v, want it unscoped", got.Subscribe)
	}
	if got := all[len(all)-2]; slices.Contains(got.Subscribe, subjects.Heartbeat("*")) {
		t.Errorf("All made svc-echo %v, want it scoped", got.Subscribe)
	}
}
