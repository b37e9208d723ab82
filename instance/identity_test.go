package instance_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/identity"
	"github.com/hailsd/hail/identity/identitytest"
	"github.com/hailsd/hail/instance"
	"github.com/hailsd/hail/member"
)

// An instance with its own identity (PROTOCOL v1.6) in a region set up as
// secure init --identities: registered under the identity's id, scoped,
// reached through its service's queue group and its own subject, and not
// one permissions violation on its connection (no NATS micro service: an
// identity may not subscribe $SRV). Shutdown deregisters it.
func TestIdentityInstance(t *testing.T) {
	r := identitytest.New(t, "echo")
	_, kv := r.Discovery(discovery.Config{})
	id, err := identity.New()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var asyncErrs []error
	opts := append(member.IdentityOptions(id, "echo", r.Secret("echo")), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		mu.Lock()
		asyncErrs = append(asyncErrs, err)
		mu.Unlock()
	}))
	nc, err := nats.Connect(r.URL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	inst, err := instance.New(nc, instance.Config{Service: "echo", Identity: id})
	if err != nil {
		t.Fatal(err)
	}
	if inst.ID() != id.ID() {
		t.Fatalf("instance id %s, want the identity's %s", inst.ID(), id.ID())
	}
	if err := inst.Handle("say", func(_ context.Context, m *nats.Msg) ([]byte, error) { return m.Data, nil }); err != nil {
		t.Fatal(err)
	}
	if err := inst.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	key := events.InstanceKey("echo", id.ID())
	bustest.Eventually(t, 10*time.Second, func() error {
		e, err := kv.Instances.Get(t.Context(), key)
		if err != nil {
			return err
		}
		rec, err := events.DecodeInstanceRecord(e.Value())
		if err != nil {
			return err
		}
		if !rec.Scoped || rec.Status != events.Passing {
			return errors.New("not passing and scoped yet")
		}
		return nil
	})
	router := r.Connect(events.RoleRouter)
	s := events.Subjects{}
	if m, err := router.Request(s.InstOf("echo", id.ID(), "say", true), []byte("hi"), 5*time.Second); err != nil || string(m.Data) != "hi" {
		t.Errorf("its own subject: %v %v", m, err)
	}
	if err := inst.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Instances.Get(t.Context(), key); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("%s after shutdown: %v, want it deregistered", key, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asyncErrs) > 0 {
		t.Errorf("the identity's connection was told %v", asyncErrs)
	}
}
