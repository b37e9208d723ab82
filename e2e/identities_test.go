package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/credentials"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/identity"
	"github.com/hailsd/hail/internal/proctest"
	"github.com/hailsd/hail/member"
)

// identityRegion is a region set up as the README says with secure init,
// whose default is identities (PROTOCOL v1.6): the nats program serving
// the set over TLS and running its auth callout, and a discovery process;
// echo processes join with their own identities.
type identityRegion struct {
	t   testing.TB
	dir *credentials.Dir
	url string
	// caller asks discovery; router hears health events.
	caller, router *nats.Conn
}

func startIdentityRegion(t testing.TB) *identityRegion {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "secure")
	out, err := exec.Command(filepath.Join(bins, "nats"), "secure", "init", "--dir", dir, "--services", "echo,greeter", "--hash-cost", "4").CombinedOutput()
	if err != nil {
		t.Fatalf("secure init: %v\n%s", err, out)
	}
	d, err := credentials.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	port := bustest.FreePort(t)
	r := &identityRegion{t: t, dir: d, url: "tls://127.0.0.1:" + strconv.Itoa(port)}
	start(t, "nats", "nats", map[string]string{"HAIL_LOG_LEVEL": "warn"}, "--listen", "127.0.0.1:"+strconv.Itoa(port), "--store-dir", t.TempDir(),
		"--tls-cert", d.File(credentials.ServerCertFile), "--tls-key", d.File(credentials.ServerKeyFile), "--auth-file", d.File(credentials.AuthConfFile))
	bustest.Eventually(t, time.Minute, func() error {
		nc, err := r.role(events.RoleCaller)
		if err != nil {
			return err
		}
		r.caller = nc
		return nil
	})
	t.Cleanup(r.caller.Close)
	if r.router, err = r.role(events.RoleRouter); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.router.Close)
	env := envFile(t, d.File(events.RoleDiscovery+".env"))
	env["HAIL_NATS_URL"], env["HAIL_LOG_LEVEL"] = r.url, "warn"
	start(t, "discovery", "discovery", env, "--http-addr", "127.0.0.1:"+strconv.Itoa(bustest.FreePort(t)))
	return r
}

// role connects as a static role with its password.
func (r *identityRegion) role(name string, opts ...nats.Option) (*nats.Conn, error) {
	o, err := r.dir.Options(name)
	if err != nil {
		return nil, err
	}
	return nats.Connect(r.url, append(o, opts...)...)
}

func (r *identityRegion) secret(service string) string {
	r.t.Helper()
	s, err := member.ReadSecret(r.dir.File(credentials.SecretFile(service)))
	if err != nil {
		r.t.Fatal(err)
	}
	return s
}

// echo starts an echo process with its own identity, kept in a seed file,
// and returns it with the identity once it is passing.
func (r *identityRegion) echo(name string) (*proctest.Process, *identity.Identity) {
	r.t.Helper()
	seed := filepath.Join(r.t.TempDir(), name+".seed")
	p := start(r.t, "echo-"+name, "echo", map[string]string{"HAIL_NATS_URL": r.url, "HAIL_LOG_LEVEL": "warn", "HAIL_VERSION": name,
		"HAIL_NATS_TLS_CA": r.dir.File(credentials.CAFile), "HAIL_IDENTITY_SECRET_FILE": r.dir.File(credentials.SecretFile("echo")),
		"HAIL_IDENTITY_SEED_FILE": seed, "HAIL_HEARTBEAT_INTERVAL": "1s"})
	var id *identity.Identity
	bustest.Eventually(r.t, time.Minute, func() error {
		if err := p.Exited(); err != nil {
			return err
		}
		var err error
		if id, err = identity.Load(seed); err != nil {
			return err
		}
		return r.passing("echo", id.ID())
	})
	return p, id
}

// passing is nil once discovery answers that service's id is passing.
func (r *identityRegion) passing(service, id string) error {
	m, err := r.caller.Request(events.Subjects{}.DiscoveryInstances(), fmt.Appendf(nil, `{"service":%q}`, service), 2*time.Second)
	if err != nil {
		return err
	}
	var recs []events.InstanceRecord
	if err := json.Unmarshal(m.Data, &recs); err != nil {
		return fmt.Errorf("instances %s: %w", m.Data, err)
	}
	for _, rec := range recs {
		if rec.ID == id {
			if rec.Status != events.Passing {
				return fmt.Errorf("%s.%s is %s", service, id, rec.Status)
			}
			return nil
		}
	}
	return fmt.Errorf("%s.%s is not registered", service, id)
}

// health delivers service's instance id's health events.
func (r *identityRegion) health(service, id string) <-chan events.HealthEvent {
	return healthEvents(r.t, r.router, service, id)
}

// as connects with id's key as an identity of service with secret
// (another connection of the same identity as an echo process), its
// asynchronous errors collected; an error if the server refuses it.
func (r *identityRegion) as(id *identity.Identity, service, secret string, opts ...nats.Option) (*nats.Conn, *asyncErrors, error) {
	errs := &asyncErrors{}
	o := append(id.Options(service, secret), nats.RootCAs(r.dir.File(credentials.CAFile)), nats.MaxReconnects(0),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs.add(err) }))
	nc, err := nats.Connect(r.url, append(o, opts...)...)
	return nc, errs, err
}

// asyncErrors are the errors a connection was told of after the fact.
type asyncErrors struct {
	mu   sync.Mutex
	errs []error
}

func (a *asyncErrors) add(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.errs = append(a.errs, err)
}

// violation is nil once the server refused subject as a permissions
// violation.
func (a *asyncErrors) violation(subject string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, err := range a.errs {
		if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), strconv.Quote(subject)) {
			return nil
		}
	}
	return fmt.Errorf("no permissions violation for %s (errors: %v)", subject, a.errs)
}

// Two instances of one service, each with its own identity: neither can
// announce with, deregister, answer the heartbeats or requests of, or
// subscribe the subjects or inbox of the other; the server refuses it
// (a permissions violation), and an announce on its own subject with the
// other's id in the body is refused by discovery. A key cannot claim
// another key's id; a wrong secret, or another service's, is refused.
// Both stay registered and passing through all of it. admin deregisters
// either.
func TestIdentitiesEndToEnd(t *testing.T) {
	r := startIdentityRegion(t)
	_, a := r.echo("a")
	_, b := r.echo("b")
	s := events.Subjects{}
	secret := r.secret("echo")
	for _, pair := range [][2]*identity.Identity{{a, b}, {b, a}} {
		self, other := pair[0], pair[1]
		nc, errs, err := r.as(self, "echo", secret)
		if err != nil {
			t.Fatalf("%s's own identity refused: %v", self.ID(), err)
		}
		defer nc.Close()
		announce := mustMarshal(t, events.Announce{ID: other.ID(), Service: "echo", Version: "x", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100, Scoped: true})
		deregister := mustMarshal(t, events.Deregister{ID: other.ID(), Service: "echo", Reason: "attack"})
		for _, c := range []struct {
			name, subject string
			publish       []byte // publish it, else subscribe it
		}{
			{"announce as the other", s.Announce("echo") + "." + other.ID(), announce},
			{"announce on the shared subject", s.Announce("echo"), announce},
			{"deregister the other", s.Deregister("echo") + "." + other.ID(), deregister},
			{"deregister on the shared subject", s.Deregister("echo"), deregister},
			{"answer into the other's inbox", "_INBOX." + other.ID() + ".x.1", []byte(`{"status":"critical"}`)},
			{"hear the other's heartbeats", s.HeartbeatOf("echo", other.ID(), true), nil},
			{"hear the other's requests", s.InstOf("echo", other.ID(), "say", true), nil},
			{"hear every instance's requests", s.InstOf("echo", "*", "say", true), nil},
			{"hear the other's inbox", "_INBOX." + other.ID() + ".>", nil},
			{"hear the service's requests outside its queue group", s.Svc("echo", "say"), nil},
			{"hear announces", s.AnnounceAll(), nil},
		} {
			t.Run(self.ID()[:8]+" "+c.name, func(t *testing.T) {
				if c.publish != nil {
					err = nc.Publish(c.subject, c.publish)
				} else {
					_, err = nc.Subscribe(c.subject, func(*nats.Msg) { t.Errorf("%s heard on %s", self.ID(), c.subject) })
				}
				if err != nil {
					t.Fatal(err)
				}
				bustest.Eventually(t, 5*time.Second, func() error { return errs.violation(c.subject) })
			})
		}
		// Its own subject with the other's id in the body: discovery
		// refuses it.
		t.Run(self.ID()[:8]+" the other's id in the body", func(t *testing.T) {
			m, err := nc.Request(s.Announce("echo")+"."+self.ID(), announce, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			code, text, isErr := events.ReplyError(m)
			if !isErr || code != events.CodeBadRequest || !strings.Contains(text, "differs") {
				t.Fatalf("answered %d %q, want a 400 that names the id", code, text)
			}
		})
	}
	// The other's id as the connection's name, with one's own key.
	if nc, _, err := r.as(a, "echo", secret, nats.Name(b.ID())); err == nil {
		nc.Close()
		t.Error("a's key connected as b's id")
	}
	for _, c := range []struct{ name, service, secret string }{
		{"wrong secret", "echo", secret + "x"},
		{"another service's secret", "echo", r.secret("greeter")},
		{"its secret for another service", "greeter", secret},
		{"no secret", "echo", ""},
	} {
		if nc, _, err := r.as(a, c.service, c.secret); err == nil {
			nc.Close()
			t.Errorf("%s: connected", c.name)
		}
	}
	for _, id := range []*identity.Identity{a, b} {
		if err := r.passing("echo", id.ID()); err != nil {
			t.Errorf("after the attacks: %v", err)
		}
	}
	// admin deregisters b, with the README's nats CLI line.
	hev := r.health("echo", b.ID())
	out, err := r.adminCLI(t, b.ID())
	if err != nil {
		t.Fatalf("the README's admin deregister: %v\n%s", err, out)
	}
	if strings.Contains(out, events.HeaderServiceErrorCode) {
		t.Fatalf("admin's deregister refused:\n%s", out)
	}
	waitStatus(t, hev, events.Deregistered, 10*time.Second)
}

// An echo process with its own identity killed with kill -9: discovery
// hears its identity's connection close (the advisory names the
// identity, <S>.<id>) and marks it critical at once, without waiting for
// three missed heartbeats. How quickly is measured by a benchmark
// (e2e/scale's identities step), not here.
func TestKilledIdentityCritical(t *testing.T) {
	r := startIdentityRegion(t)
	victim, v := r.echo("victim")
	r.echo("other")
	hev := r.health("echo", v.ID())
	if err := syscall.Kill(victim.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ev := waitStatus(t, hev, events.Critical, 10*time.Second)
	if !strings.HasPrefix(ev.Reason, "disconnected:") {
		t.Errorf("critical for %q, want the disconnect", ev.Reason)
	}
	victim.Kill()
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// envFile reads a .env file secure init wrote.
func envFile(t testing.TB, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			out[k] = v
		}
	}
	return out
}

// adminReadmeLine says whether a README nats line is the operator's
// deregistration as admin, which needs a region of identities:
// TestIdentitiesEndToEnd runs it, not TestReadmeNatsCommands.
func adminReadmeLine(l readmeLine) bool { return strings.Contains(l.cmd, "$HAIL_NATS_USER") }

// adminCLI runs the README's admin deregistration line for echo's
// instance id against r, with admin.env's values, and returns its output.
func (r *identityRegion) adminCLI(t *testing.T, id string) (string, error) {
	t.Helper()
	lines, err := readmeShLines("../README.md", "nats ")
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range lines {
		if adminReadmeLine(l) {
			line = l.cmd
		}
	}
	if line == "" {
		t.Fatal("the README has no nats line deregistering as admin")
	}
	env := envFile(t, r.dir.File(events.RoleAdmin+".env"))
	line = strings.ReplaceAll(line, "tls://127.0.0.1:4222", r.url)
	line = strings.ReplaceAll(line, "<id>", id)
	for k, v := range env {
		line = strings.ReplaceAll(line, `"$`+k+`"`, shellQuote(v))
	}
	args, err := shellWords(line)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(natsCLIPath(t), args[1:]...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	b, err := cmd.CombinedOutput()
	return string(b), err
}

// shellQuote quotes s for shellWords.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
