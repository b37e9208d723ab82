package console_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/console"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/identity"
	"github.com/hailsd/hail/identity/identitytest"
	"github.com/hailsd/hail/instance"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/member"
)

// In an open region the page deregisters an instance on the console's own
// connection; what it cannot find or parse it refuses.
func TestConsoleDeregistersInOpenRegion(t *testing.T) {
	e := newEnv(t)
	a := fakeinst.Start(t, e.URL, fakeinst.Options{Service: "echo"})
	health, err := e.NC.SubscribeSync(events.Subjects{}.Health("echo", a.ID))
	if err != nil {
		t.Fatal(err)
	}
	// The announce is acknowledged once the node has written it; the
	// console's own follower of hail_instances has it a moment later, as
	// the page shows it to an operator before anyone can click.
	bustest.Eventually(t, 10*time.Second, func() error {
		var views []console.InstanceView
		e.GetJSON("/api/instances?service=echo", &views)
		for _, v := range views {
			if v.ID == a.ID {
				return nil
			}
		}
		return fmt.Errorf("the console does not list %s yet", a.ID)
	})
	tests := []struct {
		name, id string
		code     int
	}{
		{"not an id", "not-a-uuid", http.StatusBadRequest},
		{"not registered", "0190f1b6-0000-7000-8000-000000000000", http.StatusNotFound},
		{"registered", a.ID, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, body := e.Do(http.MethodPost, "/api/instances/"+tt.id+"/deregister", ""); code != tt.code {
				t.Fatalf("deregister %s: %d %s, want %d", tt.id, code, body, tt.code)
			}
		})
	}
	if _, err := e.Record(events.InstanceKey("echo", a.ID)); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("record after deregistration: %v, want none", err)
	}
	for {
		m, err := health.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("no deregistered event: %v", err)
		}
		ev, err := events.DecodeHealthEvent(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Status != events.Deregistered {
			continue
		}
		if !strings.Contains(ev.Reason, "operator") {
			t.Errorf("event %+v, want the operator's reason", ev)
		}
		break
	}
}

// In a region of identities (PROTOCOL v1.6) only the identity itself and
// admin may publish on hail.deregister.<S>.<id>: the page deregisters with
// console.admin's connection, and without it says what to set.
func TestConsoleDeregistersAsAdmin(t *testing.T) {
	r := identitytest.New(t, "echo")
	_, kv := r.Discovery(discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 100 * time.Millisecond, Timeout: 80 * time.Millisecond}}})
	id, err := identity.New()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	inc, err := bus.Connect(ctx, bus.ConnectOptions{URL: r.URL, Extra: member.IdentityOptions(id, "echo", r.Secret("echo"))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inc.Close)
	inst, err := instance.New(inc, instance.Config{Service: "echo", Version: "1.0.0", Identity: id, HeartbeatInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := inst.Handle("say", func(context.Context, *nats.Msg) ([]byte, error) { return []byte("hi"), nil }); err != nil {
		t.Fatal(err)
	}
	if err := inst.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	key := events.InstanceKey("echo", id.ID())
	bustest.Eventually(t, 10*time.Second, func() error {
		_, err := kv.Instances.Get(t.Context(), key)
		return err
	})

	serve := func(admin *nats.Conn) *httptest.Server {
		cnc := r.Connect(events.RoleConsole)
		ckv, err := bus.OpenBuckets(t.Context(), cnc, nil)
		if err != nil {
			t.Fatal(err)
		}
		region := console.NewRegion(cnc, ckv, console.RegionConfig{Admin: admin})
		rctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- region.Run(rctx) }()
		srv := httptest.NewServer(region.Handler(console.Guard{}))
		t.Cleanup(func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("console: %v", err)
			}
			srv.Close()
		})
		select {
		case <-region.Ready():
		case <-time.After(10 * time.Second):
			t.Fatal("console not ready within 10s")
		}
		return srv
	}
	post := func(srv *httptest.Server) (int, string) {
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/instances/"+id.ID()+"/deregister", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var b strings.Builder
		_, _ = fmt.Fprint(&b, res.Status)
		buf := make([]byte, 4096)
		n, _ := res.Body.Read(buf)
		return res.StatusCode, b.String() + " " + string(buf[:n])
	}

	if code, body := post(serve(nil)); code != http.StatusBadGateway || !strings.Contains(body, "console.admin") {
		t.Errorf("as the console role: %d %s, want 502 naming console.admin", code, body)
	}
	if _, err := kv.Instances.Get(t.Context(), key); err != nil {
		t.Fatalf("the console role deregistered the instance: %v", err)
	}
	if code, body := post(serve(r.Connect(events.RoleAdmin))); code != http.StatusOK {
		t.Fatalf("as admin: %d %s", code, body)
	}
	if _, err := kv.Instances.Get(t.Context(), key); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("record after admin's deregistration: %v, want none", err)
	}
}
