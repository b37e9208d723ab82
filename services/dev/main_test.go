package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/credentials"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/testlog"
	"github.com/nats-io/nats.go"
)

// devStack is a dev stack run by a test.
type devStack struct {
	url    string
	out    *testlog.Buffer
	cancel context.CancelFunc
	done   chan error
}

// startDev runs the dev stack with args on a free port and waits until it
// says it is up.
func startDev(t *testing.T, args ...string) *devStack {
	t.Helper()
	d := &devStack{url: fmt.Sprintf("nats://127.0.0.1:%d", bustest.FreePort(t)), out: &testlog.Buffer{}, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	t.Cleanup(cancel)
	args = append([]string{"--nats-url", d.url, "--http-addr", "", "--greeter-addr", "", "--ingress-addr", "", "--consul-addr", "", "--dns-addr", ""}, args...)
	go func() { d.done <- run(ctx, args, func(string) string { return "" }, d.out) }()
	// A deadline, not a wait: a secured stack checks a bcrypt hash per
	// connection, slow under the race detector on a busy machine.
	bustest.Eventually(t, 60*time.Second, func() error {
		if !strings.Contains(d.out.String(), "hail dev stack is up") {
			return fmt.Errorf("not up yet")
		}
		return nil
	})
	return d
}

// stop ends the stack and checks that run returned no error.
func (d *devStack) stop(t *testing.T) {
	t.Helper()
	d.cancel()
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("dev stack did not stop")
	}
}

// The dev stack comes up with three registered echo instances that answer
// on the queue-group subject, and deregisters them when stopped.
func TestDevStack(t *testing.T) {
	d := startDev(t)
	url, out, ctx := d.url, d.out, t.Context()
	nc := bustest.Connect(t, url)
	kv := bustest.Buckets(t, nc)
	var keys []string
	bustest.Eventually(t, 5*time.Second, func() error {
		lister, err := kv.Instances.ListKeys(ctx)
		if err != nil {
			return err
		}
		keys = keys[:0]
		for k := range lister.Keys() {
			keys = append(keys, k)
		}
		if len(keys) != 3 {
			return fmt.Errorf("keys %v, want 3", keys)
		}
		return nil
	})
	for _, k := range keys {
		if !strings.HasPrefix(k, "echo.") {
			t.Errorf("key %s", k)
		}
	}
	m, err := nc.Request("hail.svc.echo.say", []byte("hi"), 2*time.Second)
	if err != nil || string(m.Data) != "hi" || m.Header.Get(events.HeaderInstance) == "" {
		t.Fatalf("echo.say: %v %v", m, err)
	}
	// Through the router; its table follows the registry within moments.
	bustest.Eventually(t, 5*time.Second, func() error {
		m, err := nc.Request("hail.route.echo.say", []byte("hi"), 2*time.Second)
		if err != nil {
			return err
		}
		if string(m.Data) != "hi" || m.Header.Get(events.HeaderInstance) == "" {
			return fmt.Errorf("routed reply %q %v", m.Data, m.Header)
		}
		return nil
	})
	m, err = nc.Request("hail.discovery.services", []byte("{}"), 2*time.Second)
	var svcs []events.ServiceSummary
	if err != nil || json.Unmarshal(m.Data, &svcs) != nil || len(svcs) != 1 || svcs[0].Passing != 3 {
		t.Errorf("services: %s %v", m.Data, err)
	}
	for _, want := range []string{"nats -s " + url + " kv ls hail_instances", "request hail.svc.echo.say hi", "request hail.route.echo.say hi", "kv put hail_config route.echo"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("welcome lacks %q", want)
		}
	}
	dereg := make(chan struct{}, 3)
	nc.Subscribe("hail.health.>", func(m *nats.Msg) {
		if strings.Contains(string(m.Data), `"deregistered"`) {
			dereg <- struct{}{}
		}
	})
	nc.Flush()
	d.stop(t)
	if len(dereg) != 3 {
		t.Errorf("%d deregistered events at shutdown, want 3", len(dereg))
	}
}

// --discovery 3 runs a region of three nodes sharing the instances.
func TestDevStackRegion(t *testing.T) {
	d := startDev(t, "--discovery", "3", "--echo", "12")
	ctx := t.Context()
	nc := bustest.Connect(t, d.url)
	kv := bustest.Buckets(t, nc)
	nodes := map[string]bool{}
	lister, err := kv.Nodes.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k := range lister.Keys() {
		nodes[k] = true
	}
	if len(nodes) != 3 {
		t.Fatalf("hail_nodes: %v, want 3 nodes", nodes)
	}
	// Ownership settles on the rendezvous owner of each instance.
	bustest.Eventually(t, 10*time.Second, func() error {
		m, err := nc.Request("hail.discovery.instances", []byte(`{"service":"echo"}`), 2*time.Second)
		if err != nil {
			return err
		}
		var recs []events.InstanceRecord
		if err := json.Unmarshal(m.Data, &recs); err != nil {
			return err
		}
		owners := map[string]int{}
		for _, r := range recs {
			if !nodes[r.Node] {
				return fmt.Errorf("%s owned by %q", r.ID, r.Node)
			}
			owners[r.Node]++
		}
		if len(recs) != 12 || len(owners) < 2 {
			return fmt.Errorf("%d records, owners %v", len(recs), owners)
		}
		return nil
	})
	d.stop(t)
}

// The greeter, an HTTP service behind an agent, is registered with its
// address, port and check out of the box; POST /health/fail turns it
// critical, /health/recover passing again.
func TestDevStackGreeter(t *testing.T) {
	d := startDev(t, "--greeter-addr", "127.0.0.1:0")
	nc := bustest.Connect(t, d.url)
	var rec events.InstanceRecord
	bustest.Eventually(t, 10*time.Second, func() error {
		m, err := nc.Request("hail.discovery.instances", []byte(`{"service":"greeter"}`), 2*time.Second)
		if err != nil {
			return err
		}
		var recs []events.InstanceRecord
		if err := json.Unmarshal(m.Data, &recs); err != nil || len(recs) != 1 {
			return fmt.Errorf("greeter instances %s (%v)", m.Data, err)
		}
		rec = recs[0]
		return nil
	})
	if rec.Address != "127.0.0.1" || rec.Port == 0 || len(rec.Checks) != 1 || rec.Checks[0].Kind != events.CheckHTTP || rec.Status != events.Passing {
		t.Fatalf("greeter record %+v", rec)
	}
	line, ok := d.out.Line("greeter     an HTTP service at http://")
	if !ok {
		t.Fatalf("welcome lacks the greeter:\n%s", d.out.String())
	}
	base := strings.Fields(line[strings.Index(line, "http://"):])[0]
	status := func(want events.Status) {
		t.Helper()
		bustest.Eventually(t, 5*time.Second, func() error {
			m, err := nc.Request("hail.discovery.instances", []byte(`{"service":"greeter"}`), 2*time.Second)
			if err != nil {
				return err
			}
			var recs []events.InstanceRecord
			if err := json.Unmarshal(m.Data, &recs); err != nil || len(recs) != 1 || recs[0].Status != want {
				return fmt.Errorf("greeter %s, want %s", m.Data, want)
			}
			return nil
		})
	}
	for path, want := range map[string]events.Status{"/health/fail": events.Critical, "/health/recover": events.Passing} {
		resp, err := http.Post(base+path, "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		status(want)
	}
}

// Out of the box the router's ingress reaches the greeter (HTTP, through
// its agent's bridge) and echo (an SDK instance), as the welcome says.
func TestDevStackIngress(t *testing.T) {
	d := startDev(t, "--greeter-addr", "127.0.0.1:0", "--ingress-addr", "127.0.0.1:0")
	line, ok := d.out.Line("ingress     http://")
	if !ok {
		t.Fatalf("welcome lacks the ingress:\n%s", d.out.String())
	}
	base := strings.TrimSuffix(strings.Fields(line)[1], "/<service>/<endpoint>:")
	for _, tt := range []struct {
		method, path, body, want string
	}{
		{http.MethodGet, "/greeter/hello", "", "hello, world, from greeter"},
		{http.MethodGet, "/greeter/http/hello?name=ann", "", "hello, ann, from greeter"},
		{http.MethodPost, "/echo/say", "hi", "hi"},
	} {
		bustest.Eventually(t, 10*time.Second, func() error {
			req, _ := http.NewRequest(tt.method, base+tt.path, strings.NewReader(tt.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || !strings.Contains(string(b), tt.want) {
				return fmt.Errorf("%s %s: %d %q", tt.method, tt.path, resp.StatusCode, b)
			}
			return nil
		})
	}
}

// --secure runs the stack with TLS and a user per role: the caller's
// flags it prints route a request; nobody gets in without credentials,
// and the caller may not write a bucket.
func TestSecureDevStack(t *testing.T) {
	store := t.TempDir()
	d := startDev(t, "--secure", "--store-dir", store, "--echo", "1")
	out := d.out.String()
	for _, want := range []string{"tls://", "--user caller", "--inbox-prefix _INBOX.caller", "--tlsca " + filepath.Join(store, "secure", "ca.pem")} {
		if !strings.Contains(out, want) {
			t.Errorf("welcome lacks %q:\n%s", want, out)
		}
	}
	creds, err := credentials.Read(filepath.Join(store, "secure"))
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := creds.User("caller"); strings.Contains(out, u.Password) {
		t.Error("the welcome prints the caller's password")
	}
	url := strings.Replace(d.url, "nats://", "tls://", 1)
	opts, err := creds.Options("caller")
	if err != nil {
		t.Fatal(err)
	}
	violations := make(chan error, 4)
	// The server's bcrypt check and the TLS handshake can outlast the
	// default 2 s on a busy CI machine.
	opts = append(opts, nats.Timeout(15*time.Second), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err }))
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("caller connects: %v", err)
	}
	defer nc.Close()
	bustest.Eventually(t, 10*time.Second, func() error {
		m, err := nc.Request("hail.route.echo.say", []byte("hi"), 2*time.Second)
		if err != nil {
			return err
		}
		if string(m.Data) != "hi" {
			return fmt.Errorf("routed reply %q %v", m.Data, m.Header)
		}
		return nil
	})
	_ = nc.Publish("$KV.hail_config.route.echo", []byte(`{"strategy":"hash"}`))
	_ = nc.Flush()
	select {
	case err := <-violations:
		if !strings.Contains(err.Error(), "ermissions") {
			t.Errorf("caller writing a bucket: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Error("the caller wrote a bucket unrefused")
	}
	if anon, err := nats.Connect(url, nats.RootCAs(creds.File(credentials.CAFile))); err == nil {
		anon.Close()
		t.Error("a client without credentials got in")
	}
	d.stop(t)
}
