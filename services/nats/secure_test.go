package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/config"
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

// secure init writes a CA, a server certificate, auth.conf and one .env
// per role; the server runs with them (TLS, the roles as users); a role
// connects with its .env, and a wrong password or a client without the CA
// is refused; the roles' permissions hold.
func TestSecureInitAndServe(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secure")
	var out strings.Builder
	// bcrypt at its lowest cost: at 11, under the race detector, the
	// server takes longer than the client waits (credentials.Options.HashCost).
	if err := run(t.Context(), []string{"secure", "init", "--dir", dir, "--services", "echo,greeter", "--hash-cost", "4"}, nil, &out); err != nil {
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

// secure init's flags: --dir has a default; svc-<S> is scoped unless the
// service is named in --unscoped-services; --scoped-only (the default)
// contradicts that.
func TestSecureInitFlags(t *testing.T) {
	for _, tt := range []struct {
		args     []string
		dir      string
		unscoped []string
		err      bool
	}{
		{args: []string{"--services", "echo"}, dir: defaultSecureDir},
		{args: []string{"--services", "echo", "--scoped-only", "--dir", "x"}, dir: "x"},
		{args: []string{"--services", "echo,greeter", "--unscoped-services", "greeter"}, dir: defaultSecureDir, unscoped: []string{"greeter"}},
		{args: []string{"--services", "echo", "--unscoped-services", "echo", "--scoped-only"}, err: true},
		{args: []string{"--dir", ""}, err: true},
		{args: []string{"--services", "echo", "--identities"}, dir: defaultSecureDir},
		{args: []string{"--services", "echo", "--identities", "--unscoped-services", "echo"}, err: true},
		{args: []string{"--hash-cost", "x"}, err: true},
	} {
		a, err := parseSecureInit(tt.args, io.Discard)
		if (err != nil) != tt.err {
			t.Errorf("%v: %v", tt.args, err)
			continue
		}
		if err == nil && (a.dir != tt.dir || !slices.Equal(a.options.Unscoped, tt.unscoped)) {
			t.Errorf("%v: dir %q, unscoped %v; want %q, %v", tt.args, a.dir, a.options.Unscoped, tt.dir, tt.unscoped)
		}
	}
}
