package callout_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/bus/embedded"
	"github.com/hailsd/hail/callout"
	"github.com/hailsd/hail/credentials"
	"github.com/hailsd/hail/identity"
)

// region is a server with an identities set (secure init --identities)
// and its callout running.
type region struct {
	srv *server.Server
	dir *credentials.Dir
}

func newRegion(t *testing.T) region { return newRegionLogged(t, nil) }

func newRegionLogged(t *testing.T, log *slog.Logger) region {
	t.Helper()
	d, err := credentials.Write(filepath.Join(t.TempDir(), "secure"), credentials.Options{Services: []string{"echo", "greeter"},
		Hosts: []string{"127.0.0.1"}, HashCost: credentials.MinHashCost, Identities: true})
	if err != nil {
		t.Fatal(err)
	}
	configure, err := embedded.Security{AuthFile: d.File(credentials.AuthConfFile)}.Configure()
	if err != nil {
		t.Fatal(err)
	}
	srv := bustest.RunServerWith(t, configure)
	stop, err := callout.StartInProcess(srv, d.Path, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return region{srv: srv, dir: d}
}

func (r region) secret(t *testing.T, service string) string {
	t.Helper()
	b, err := os.ReadFile(r.dir.File(credentials.SecretFile(service)))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// role connects as one of the static roles, with its password.
func (r region) role(t *testing.T, name string, opts ...nats.Option) (*nats.Conn, error) {
	t.Helper()
	u, ok := r.dir.User(name)
	if !ok {
		t.Fatalf("no user %s", name)
	}
	return nats.Connect(r.srv.ClientURL(), append([]nats.Option{nats.UserInfo(u.Name, u.Password), nats.CustomInboxPrefix(u.InboxPrefix)}, opts...)...)
}

// violations collects a connection's asynchronous errors.
func violations() (nats.Option, chan error) {
	ch := make(chan error, 16)
	return nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { ch <- err }), ch
}

func newIdentity(t *testing.T) *identity.Identity {
	t.Helper()
	i, err := identity.New()
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// An identity with its service's secret gets in as <service>.<id>, with
// exactly its own subjects: another instance's announce, deregister,
// heartbeats, requests and inbox, the unscoped subjects and the service's
// requests outside its queue group are refused.
func TestIdentityHasItsOwnSubjectsAlone(t *testing.T) {
	r := newRegion(t)
	a, b := newIdentity(t), newIdentity(t)
	onErr, errs := violations()
	nc, err := nats.Connect(r.srv.ClientURL(), append(a.Options("echo", r.secret(t, "echo")), onErr)...)
	if err != nil {
		t.Fatalf("identity refused: %v", err)
	}
	defer nc.Close()

	cz, err := r.srv.Connz(&server.ConnzOptions{Username: true})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cz.Conns {
		if c.Name == a.ID() {
			names = append(names, c.AuthorizedUser+"@"+c.Account)
		}
	}
	if want := "echo." + a.ID() + "@HAIL"; len(names) != 1 || names[0] != want {
		t.Errorf("the identity is %v, want %s", names, want)
	}

	noop := func(*nats.Msg) {}
	for _, tt := range []struct {
		name  string
		do    func() error
		allow bool
	}{
		{"announce as itself", func() error { return nc.Publish("hail.announce.echo."+a.ID(), []byte("{}")) }, true},
		{"deregister itself", func() error { return nc.Publish("hail.deregister.echo."+a.ID(), []byte("{}")) }, true},
		{"hear its heartbeats", func() error { _, err := nc.Subscribe("hail.hb.echo."+a.ID(), noop); return err }, true},
		{"hear its requests", func() error { _, err := nc.Subscribe("hail.inst.echo."+a.ID()+".*", noop); return err }, true},
		{"hear its service in the queue group", func() error { _, err := nc.QueueSubscribe("hail.svc.echo.*", "hail.echo", noop); return err }, true},
		{"hear discover", func() error { _, err := nc.Subscribe("hail.discover", noop); return err }, true},
		{"hear its inbox", func() error { _, err := nc.Subscribe(a.InboxPrefix()+".>", noop); return err }, true},
		{"announce as another", func() error { return nc.Publish("hail.announce.echo."+b.ID(), []byte("{}")) }, false},
		{"deregister another", func() error { return nc.Publish("hail.deregister.echo."+b.ID(), []byte("{}")) }, false},
		{"announce unscoped", func() error { return nc.Publish("hail.announce.echo", []byte("{}")) }, false},
		{"deregister unscoped", func() error { return nc.Publish("hail.deregister.echo", []byte("{}")) }, false},
		{"announce as another service", func() error { return nc.Publish("hail.announce.greeter."+a.ID(), []byte("{}")) }, false},
		{"publish to $SYS", func() error { return nc.Publish("$SYS.REQ.USER.AUTH", []byte("{}")) }, false},
		{"hear another's heartbeats", func() error { _, err := nc.Subscribe("hail.hb.echo."+b.ID(), noop); return err }, false},
		{"hear another's requests", func() error { _, err := nc.Subscribe("hail.inst.echo."+b.ID()+".*", noop); return err }, false},
		{"hear another's inbox", func() error { _, err := nc.Subscribe(b.InboxPrefix()+".>", noop); return err }, false},
		{"hear every inbox", func() error { _, err := nc.Subscribe("_INBOX.>", noop); return err }, false},
		{"hear its service outside the queue group", func() error { _, err := nc.Subscribe("hail.svc.echo.*", noop); return err }, false},
		{"hear its service in another queue group", func() error { _, err := nc.QueueSubscribe("hail.svc.echo.*", "spy", noop); return err }, false},
		{"hear every heartbeat", func() error { _, err := nc.Subscribe("hail.hb.>", noop); return err }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(); err != nil {
				t.Fatal(err)
			}
			// A refused publish always follows: the server answers in
			// order, so the first error heard says whether tt's was
			// refused.
			if err := nc.Publish("hail.health.echo.marker", nil); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-errs:
				refused := !strings.Contains(err.Error(), "hail.health.echo.marker")
				if refused == tt.allow {
					t.Errorf("allowed %v, but the server said: %v", tt.allow, err)
				}
				if refused {
					<-errs // the marker's
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the server refused nothing, not even the marker")
			}
		})
	}
}

// What is not an identity of a service with its secret is refused: a
// wrong secret, another service's, an unknown service, a name that is not
// the key's id, no nkey, a signature by another key.
func TestRefused(t *testing.T) {
	r := newRegion(t)
	a, b := newIdentity(t), newIdentity(t)
	echo, greeter := r.secret(t, "echo"), r.secret(t, "greeter")
	// bSign signs with b's key while presenting a's public key.
	bSeed, _ := os.CreateTemp(t.TempDir(), "seed")
	bSeed.Close()
	if err := b.Save(bSeed.Name()); err != nil {
		t.Fatal(err)
	}
	seed, _ := os.ReadFile(bSeed.Name())
	bKP, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		opts []nats.Option
	}{
		{"wrong secret", a.Options("echo", "not-"+echo)},
		{"another service's secret", a.Options("echo", greeter)},
		{"unknown service", a.Options("nobody", echo)},
		{"a name not its key's id", append(a.Options("echo", echo), nats.Name(b.ID()))},
		{"no name", append(a.Options("echo", echo), nats.Name(""))},
		{"no nkey", []nats.Option{nats.UserInfo("echo", echo), nats.Name(a.ID())}},
		{"another key's signature", append(a.Options("echo", echo), nats.Nkey(a.PublicKey(), bKP.Sign))},
		{"a static role's name with a service's secret", a.Options("discovery", echo)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := nats.Connect(r.srv.ClientURL(), append(tt.opts, nats.MaxReconnects(0))...)
			if err == nil {
				nc.Close()
				t.Fatal("let in")
			}
			if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
				t.Errorf("refused, but not for authorization: %v", err)
			}
		})
	}
	// The same identity with everything right gets in: the refusals
	// above were for what each changed.
	nc, err := nats.Connect(r.srv.ClientURL(), a.Options("echo", echo)...)
	if err != nil {
		t.Fatalf("the identity itself: %v", err)
	}
	nc.Close()
}

// The static roles keep their passwords and are not the callout's to
// judge; admin deregisters any instance, which an identity may not.
func TestStaticRolesAndAdmin(t *testing.T) {
	r := newRegion(t)
	for _, name := range []string{"discovery", "router", "console", "caller", "admin"} {
		nc, err := r.role(t, name)
		if err != nil {
			t.Errorf("%s refused: %v", name, err)
			continue
		}
		nc.Close()
	}
	if nc, err := r.role(t, "discovery", nats.UserInfo("discovery", "wrong")); err == nil {
		nc.Close()
		t.Error("discovery with a wrong password let in")
	}

	disc, err := r.role(t, "discovery")
	if err != nil {
		t.Fatal(err)
	}
	defer disc.Close()
	heard, err := disc.SubscribeSync("hail.deregister.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := disc.Flush(); err != nil {
		t.Fatal(err)
	}
	admin, err := r.role(t, "admin")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	victim := newIdentity(t)
	subject := "hail.deregister.echo." + victim.ID()
	if err := admin.Publish(subject, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	m, err := heard.NextMsg(10 * time.Second)
	if err != nil || m.Subject != subject {
		t.Fatalf("admin's deregister not heard: %v", err)
	}
}

// A refusal is logged without the secret, also when a client put it in
// the user field.
func TestRefusalLogsNoSecret(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&lockedWriter{mu: &mu, w: &buf}, nil))
	r := newRegionLogged(t, log)
	a := newIdentity(t)
	echo := r.secret(t, "echo")
	for _, opts := range [][]nats.Option{a.Options(echo, echo), a.Options("echo", echo+"x")} {
		if nc, err := nats.Connect(r.srv.ClientURL(), append(opts, nats.MaxReconnects(0))...); err == nil {
			nc.Close()
			t.Fatal("let in")
		}
	}
	bustest.Eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if n := strings.Count(buf.String(), "auth callout: refused"); n < 2 {
			return fmt.Errorf("%d refusals logged", n)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(buf.String(), echo) {
		t.Errorf("the log holds the secret:\n%s", buf.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
