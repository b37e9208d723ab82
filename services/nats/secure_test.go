package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/config"
	"github.com/hailsd/hail/credentials"
	"github.com/hailsd/hail/events"
)

// envFile reads a <user>.env that secure init wrote.
func envFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			out[k] = v
		}
	}
	return out
}

// serveSecure runs the server with the TLS files and auth.conf that secure
// init wrote to dir until the test ends, and returns its URL.
func serveSecure(t *testing.T, dir string) string {
	t.Helper()
	port := bustest.FreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--store-dir", t.TempDir(),
			"--tls-cert", filepath.Join(dir, "server.pem"), "--tls-key", filepath.Join(dir, "server-key.pem"), "--auth-file", filepath.Join(dir, "auth.conf")},
			func(string) string { return "" }, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return fmt.Sprintf("tls://127.0.0.1:%d", port)
}

// secure init --shared-service-users writes a CA, a server certificate,
// auth.conf and one .env per role, svc-<S> for each service (v1.2); the
// server runs with them (TLS, the roles as users); a role
// connects with its .env, and a wrong password or a client without the CA
// is refused; the roles' permissions hold.
func TestSecureInitAndServe(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secure")
	var out strings.Builder
	// bcrypt at its lowest cost: at 11, under the race detector, the
	// server takes longer than the client waits (credentials.Options.HashCost).
	if err := run(t.Context(), []string{"secure", "init", "--dir", dir, "--services", "echo,greeter", "--shared-service-users", "--hash-cost", "4"}, nil, &out); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "auth.conf", "discovery.env", "router.env", "console.env", "caller.env", "svc-echo.env", "svc-greeter.env"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if (strings.HasSuffix(f, ".env") || strings.Contains(f, "key") || f == "auth.conf") && st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is readable by others: %v", f, st.Mode())
		}
	}
	router := envFile(t, filepath.Join(dir, "router.env"))
	conf, _ := os.ReadFile(filepath.Join(dir, "auth.conf"))
	if strings.Contains(string(conf), router["HAIL_NATS_PASSWORD"]) || !strings.Contains(string(conf), "$2a$") {
		t.Error("auth.conf holds a password in the clear, or no bcrypt hash")
	}

	url := serveSecure(t, dir)
	connect := func(n config.NATS) (*nats.Conn, error) {
		opts, err := n.Options()
		if err != nil {
			return nil, err
		}
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		return bus.Connect(cctx, bus.ConnectOptions{URL: n.URL, Logger: slog.New(slog.DiscardHandler), Extra: opts})
	}
	asRole := func(name string) config.NATS {
		e := envFile(t, filepath.Join(dir, name+".env"))
		return config.NATS{URL: url, User: e["HAIL_NATS_USER"], Password: e["HAIL_NATS_PASSWORD"], TLS: config.NATSTLS{CA: e["HAIL_NATS_TLS_CA"]}, InboxPrefix: e["HAIL_NATS_INBOX_PREFIX"]}
	}
	var disc *nats.Conn
	bustest.Eventually(t, 15*time.Second, func() error { // the server starting
		var err error
		disc, err = connect(asRole("discovery"))
		return err
	})
	defer disc.Close()
	if _, err := bus.EnsureBuckets(t.Context(), disc, bus.BucketOptions{}); err != nil {
		t.Fatalf("discovery creates the buckets over TLS, under its role: %v", err)
	}
	wrong := asRole("router")
	wrong.Password = "not-" + wrong.Password
	if nc, err := connect(wrong); err == nil {
		nc.Close()
		t.Error("a wrong password was let in")
	}
	noCA := asRole("router")
	noCA.TLS.CA = ""
	if nc, err := connect(noCA); err == nil {
		nc.Close()
		t.Error("a client without the CA was let in")
	}
	if nc, err := connect(config.NATS{URL: url, TLS: config.NATSTLS{CA: filepath.Join(dir, "ca.pem")}}); err == nil {
		nc.Close()
		t.Error("a client without credentials was let in")
	}
	// The roles hold: svc-echo may not publish a health event.
	echo := asRole("svc-echo")
	opts, _ := echo.Options()
	violations := make(chan error, 4)
	opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err }))
	nc, err := bus.Connect(t.Context(), bus.ConnectOptions{URL: url, Extra: opts})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.Publish("hail.health.echo.x", []byte("{}"))
	_ = nc.Flush()
	select {
	case err := <-violations:
		if !strings.Contains(err.Error(), "ermissions") {
			t.Errorf("svc-echo publishing a health event: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Error("svc-echo published a health event unrefused")
	}

	// PROTOCOL v1.4: discovery hears the disconnect advisories of the
	// account's clients, and no user may forge one.
	adv, err := disc.SubscribeSync(events.DisconnectAll)
	if err != nil {
		t.Fatal(err)
	}
	if err := disc.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = nc.Publish("$SYS.ACCOUNT.HAIL.DISCONNECT", []byte(`{"server":{"id":"N1"},"client":{"id":1},"reason":"Read Error"}`))
	_ = nc.Flush()
	select {
	case err := <-violations:
		if !strings.Contains(err.Error(), "ermissions") {
			t.Errorf("svc-echo publishing a disconnect advisory: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Error("svc-echo published a disconnect advisory unrefused")
	}
	// Nor a server's shutdown, on which discovery holds the judgement of
	// that server's clients' silence; discovery may subscribe it.
	if _, err := disc.SubscribeSync(events.ServerShutdownAll); err != nil {
		t.Fatal(err)
	}
	_ = nc.Publish("$SYS.SERVER.N1.SHUTDOWN", []byte(`{}`))
	_ = nc.Flush()
	select {
	case err := <-violations:
		if !strings.Contains(err.Error(), "ermissions") {
			t.Errorf("svc-echo publishing a server's shutdown: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Error("svc-echo published a server's shutdown unrefused")
	}
	cid, err := nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	m, err := adv.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("discovery heard no disconnect advisory: %v", err)
	}
	if d, err := events.DecodeDisconnect(m.Data); err != nil || d.Conn.Client != cid {
		t.Errorf("advisory %+v (%v), want client %d", d, err, cid)
	}
}

// Beyond loopback without auth.file the server refuses to start, unless
// told insecure.
func TestOpenOnlyWhenToldInsecure(t *testing.T) {
	var out strings.Builder
	err := run(t.Context(), []string{"--listen", "0.0.0.0:4222", "--print-config"}, func(string) string { return "" }, &out)
	if err == nil || !strings.Contains(err.Error(), "auth.file") {
		t.Errorf("open listen without auth: %v", err)
	}
	if err := run(t.Context(), []string{"--listen", "0.0.0.0:4222", "--insecure", "--print-config"}, func(string) string { return "" }, &out); err != nil {
		t.Errorf("told insecure: %v", err)
	}
}

// What secure init and the server write into the directory they run in
// by default, the credentials above all, the repository ignores.
func TestDefaultsIgnoredByTheRepository(t *testing.T) {
	ignore, err := os.ReadFile("../../.gitignore")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(ignore), "\n")
	for _, dir := range []string{defaultSecureDir, defaults().StoreDir} {
		if !slices.Contains(lines, "/"+dir+"/") {
			t.Errorf(".gitignore does not ignore /%s/", dir)
		}
	}
}

// secure init's flags: --dir has a default; identities are the default,
// --identities names them and --shared-service-users writes v1.2's users
// instead (not both); svc-<S> is scoped unless the service is named in
// --unscoped-services, which only shared users can be; --scoped-only (the
// default) contradicts that.
func TestSecureInitFlags(t *testing.T) {
	for _, tt := range []struct {
		args       []string
		dir        string
		identities bool
		kindGiven  bool
		unscoped   []string
		err        string // in the error; empty: none
	}{
		{args: []string{"--services", "echo"}, dir: defaultSecureDir, identities: true},
		{args: []string{"--services", "echo", "--scoped-only", "--dir", "x"}, dir: "x", identities: true},
		{args: []string{"--services", "echo", "--identities"}, dir: defaultSecureDir, identities: true, kindGiven: true},
		{args: []string{"--services", "echo", "--identities", "--scoped-only", "--keep"}, dir: defaultSecureDir, identities: true, kindGiven: true},
		{args: []string{"--services", "echo", "--shared-service-users"}, dir: defaultSecureDir, kindGiven: true},
		{args: []string{"--services", "echo", "--shared-service-users", "--scoped-only"}, dir: defaultSecureDir, kindGiven: true},
		{args: []string{"--services", "echo,greeter", "--shared-service-users", "--unscoped-services", "greeter"}, dir: defaultSecureDir, kindGiven: true, unscoped: []string{"greeter"}},
		{args: []string{"--services", "echo", "--shared-service-users", "--identities"}, err: "--identities and --shared-service-users"},
		{args: []string{"--services", "echo,greeter", "--unscoped-services", "greeter"}, err: "--unscoped-services needs --shared-service-users"},
		{args: []string{"--services", "echo", "--identities", "--unscoped-services", "echo"}, err: "--unscoped-services needs --shared-service-users"},
		{args: []string{"--services", "echo", "--shared-service-users", "--unscoped-services", "echo", "--scoped-only"}, err: "--scoped-only and --unscoped-services"},
		{args: []string{"--dir", ""}, err: "--dir is empty"},
		{args: []string{"--hash-cost", "x"}, err: "hash-cost"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			a, err := parseSecureInit(tt.args, io.Discard)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.dir != tt.dir || a.options.Identities != tt.identities || a.kindGiven != tt.kindGiven || !slices.Equal(a.options.Unscoped, tt.unscoped) {
				t.Errorf("dir %q, identities %v (given %v), unscoped %v; want %q, %v (%v), %v",
					a.dir, a.options.Identities, a.kindGiven, a.options.Unscoped, tt.dir, tt.identities, tt.kindGiven, tt.unscoped)
			}
		})
	}
}

// secureInitIn runs secure init with args into dir, at bcrypt's lowest
// cost, and returns what it printed.
func secureInitIn(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	var out strings.Builder
	err := run(t.Context(), append([]string{"secure", "init", "--dir", dir, "--services", "echo", "--hash-cost", "4"}, args...), nil, &out)
	return out.String(), err
}

// exists says whether dir holds the file name.
func exists(t *testing.T, dir, name string) bool {
	t.Helper()
	_, err := os.Stat(filepath.Join(dir, name))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return err == nil
}

// Without a kind named, secure init writes identities (PROTOCOL v1.6):
// a secret per service, the admin role, the callout's issuer and user,
// and an auth.conf with the callout; no shared svc-<S> user. --identities
// and --scoped-only, kept for existing commands, write the same.
func TestSecureInitIdentitiesByDefault(t *testing.T) {
	for _, args := range [][]string{nil, {"--identities"}, {"--scoped-only"}} {
		t.Run(fmt.Sprint(args), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "secure")
			if _, err := secureInitIn(t, dir, args...); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"svc-echo.secret", "admin.env", "admin.password", credentials.CalloutIssuerFile, "callout.env", "callout.password", "auth.conf", "discovery.env", LeafPasswordFile} {
				if !exists(t, dir, f) {
					t.Errorf("no %s", f)
				}
			}
			for _, f := range []string{"svc-echo.env", "svc-echo.password"} {
				if exists(t, dir, f) {
					t.Errorf("%s written: a shared service user", f)
				}
			}
			conf, err := os.ReadFile(filepath.Join(dir, "auth.conf"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(conf), "auth_callout") || strings.Contains(string(conf), `"svc-echo"`) {
				t.Errorf("auth.conf has no auth_callout, or a svc-echo user:\n%s", conf)
			}
		})
	}
}

// secretsOut are the parts of a set's file that differ from one set to
// the next (passwords, their hashes, the directory's path): what is left
// is what the set is.
var secretsOut = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`HAIL_NATS_PASSWORD=.*`), "HAIL_NATS_PASSWORD=<password>"},
	{regexp.MustCompile(`\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}`), "<hash>"},
}

// --shared-service-users writes what secure init wrote before identities
// were its default: v1.2's set, credentials.Write without Identities,
// and the leaf user's password; the same files with the same modes, the
// same .env files and auth.conf but for passwords and hashes.
func TestSharedServiceUsersAsBefore(t *testing.T) {
	got := filepath.Join(t.TempDir(), "secure")
	if err := run(t.Context(), []string{"secure", "init", "--dir", got, "--services", "echo,greeter", "--hosts", "127.0.0.1,nats-1", "--shared-service-users", "--hash-cost", "4"}, nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(t.TempDir(), "secure")
	if _, err := credentials.Write(want, credentials.Options{Services: []string{"echo", "greeter"}, Hosts: []string{"127.0.0.1", "nats-1"}, HashCost: 4}); err != nil {
		t.Fatal(err)
	}
	if err := writeLeafPassword(want, false); err != nil {
		t.Fatal(err)
	}
	files := func(dir string) map[string]os.FileMode {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]os.FileMode{}
		for _, e := range entries {
			info, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			out[e.Name()] = info.Mode()
		}
		return out
	}
	gotFiles, wantFiles := files(got), files(want)
	if !maps.Equal(gotFiles, wantFiles) {
		t.Fatalf("files %v, want %v", gotFiles, wantFiles)
	}
	if _, ok := gotFiles["svc-echo.env"]; !ok {
		t.Fatal("no svc-echo.env")
	}
	normal := func(dir, name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), dir, "<dir>")
		for _, r := range secretsOut {
			s = r.re.ReplaceAllString(s, r.with)
		}
		return s
	}
	for name := range gotFiles {
		if name != credentials.AuthConfFile && !strings.HasSuffix(name, ".env") {
			continue
		}
		if g, w := normal(got, name), normal(want, name); g != w {
			t.Errorf("%s:\n%s\nwant\n%s", name, g, w)
		}
	}
}

// --keep keeps a set's kind: a set of shared service users (one written
// before identities were the default) stays one when the command names no
// kind, and an identity set stays one; a kind named that is not the set's
// is refused, the set left as it was; a directory without a set gets the
// kind asked for, identities by default.
func TestSecureInitKeepKeepsTheKind(t *testing.T) {
	for _, tt := range []struct {
		name   string
		before []string // secure init's args for the set there; nil: none
		remove string   // a file of it removed: a set cut short
		keep   []string
		kind   credentials.Kind
		kept   bool   // the CA is the one there before
		err    string // in the error; empty: none
	}{
		{name: "shared kept", before: []string{"--shared-service-users"}, keep: []string{"--keep"}, kind: credentials.SharedUsers, kept: true},
		{name: "shared kept, compose's flags", before: []string{"--shared-service-users"}, keep: []string{"--scoped-only", "--keep"}, kind: credentials.SharedUsers, kept: true},
		{name: "shared kept, named", before: []string{"--shared-service-users"}, keep: []string{"--shared-service-users", "--keep"}, kind: credentials.SharedUsers, kept: true},
		{name: "shared cut short, written again shared", before: []string{"--shared-service-users"}, remove: credentials.ConsoleTokensFile, keep: []string{"--keep"}, kind: credentials.SharedUsers},
		{name: "shared, identities named", before: []string{"--shared-service-users"}, keep: []string{"--identities", "--keep"}, kind: credentials.SharedUsers, kept: true, err: "holds shared service users"},
		{name: "identities kept", before: []string{}, keep: []string{"--keep"}, kind: credentials.IdentitySet, kept: true},
		{name: "identities kept, named", before: []string{}, keep: []string{"--identities", "--keep"}, kind: credentials.IdentitySet, kept: true},
		{name: "identities, shared named", before: []string{}, keep: []string{"--shared-service-users", "--keep"}, kind: credentials.IdentitySet, kept: true, err: "holds identities"},
		{name: "none, identities", keep: []string{"--keep"}, kind: credentials.IdentitySet},
		{name: "none, shared named", keep: []string{"--shared-service-users", "--keep"}, kind: credentials.SharedUsers},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "secure")
			var ca []byte
			if tt.before != nil {
				if _, err := secureInitIn(t, dir, tt.before...); err != nil {
					t.Fatal(err)
				}
				if tt.remove != "" {
					if err := os.Remove(filepath.Join(dir, tt.remove)); err != nil {
						t.Fatal(err)
					}
				}
				var err error
				if ca, err = os.ReadFile(filepath.Join(dir, credentials.CAFile)); err != nil {
					t.Fatal(err)
				}
			}
			out, err := secureInitIn(t, dir, tt.keep...)
			// A kind kept from the directory, not named, is said.
			if said := strings.Contains(out, "holds shared service users, which --keep keeps"); said != (tt.kind == credentials.SharedUsers && tt.err == "" && !slices.Contains(tt.keep, "--shared-service-users")) {
				t.Errorf("printed %q", out)
			}
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("error %v, want one saying %q", err, tt.err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if kind, err := credentials.KindOf(dir); err != nil || kind != tt.kind {
				t.Errorf("the set is of %v (%v), want %v", kind, err, tt.kind)
			}
			if _, err := credentials.Read(dir); err != nil && tt.err == "" {
				t.Errorf("the set is not complete: %v", err)
			}
			now, _ := os.ReadFile(filepath.Join(dir, credentials.CAFile))
			if kept := ca != nil && string(now) == string(ca); kept != tt.kept {
				t.Errorf("CA kept %v, want %v", kept, tt.kept)
			}
			shared := tt.kind == credentials.SharedUsers
			if exists(t, dir, "svc-echo.env") != shared || exists(t, dir, "svc-echo.secret") == shared {
				t.Errorf("svc-echo.env %v, svc-echo.secret %v; want a set of %v", exists(t, dir, "svc-echo.env"), exists(t, dir, "svc-echo.secret"), tt.kind)
			}
		})
	}
}
