package instance_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/instance"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
)

var subjects events.Subjects

type env struct {
	url string
	nc  *nats.Conn
	kv  *bus.Buckets
}

func newEnv(t *testing.T) *env {
	s := bustest.RunServer(t)
	nc := bustest.Connect(t, s.ClientURL())
	return &env{url: s.ClientURL(), nc: nc, kv: bustest.Buckets(t, nc)}
}

func (e *env) startNode(t *testing.T, interval time.Duration) {
	t.Helper()
	nc := bustest.Connect(t, e.url)
	n, err := discovery.New(nc, e.kv, discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: interval, Timeout: interval / 2}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node: %v", err)
		}
	})
	select {
	case <-n.Serving():
	case err := <-done:
		done <- err // for the cleanup that waits on it
		t.Fatalf("node stopped before serving: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("node not serving within 10s")
	}
}

func (e *env) status(id, service string) (events.Status, error) {
	entry, err := e.kv.Instances.Get(context.Background(), events.InstanceKey(service, id))
	if err != nil {
		return "", err
	}
	r, err := events.DecodeInstanceRecord(entry.Value())
	return r.Status, err
}

func (e *env) waitRegistered(t *testing.T, inst *instance.Instance, service string, timeout time.Duration) {
	t.Helper()
	bustest.Eventually(t, timeout, func() error {
		s, err := e.status(inst.ID(), service)
		if err != nil {
			return err
		}
		if s != events.Passing {
			return fmt.Errorf("status %s", s)
		}
		return nil
	})
}

func echoHandler(_ context.Context, m *nats.Msg) ([]byte, error) { return m.Data, nil }

func newInstance(t *testing.T, nc *nats.Conn, cfg instance.Config, handlers map[string]instance.Handler) *instance.Instance {
	t.Helper()
	inst, err := instance.New(nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for ep, h := range handlers {
		if err := inst.Handle(ep, h); err != nil {
			t.Fatal(err)
		}
	}
	if err := inst.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Shutdown(context.Background()) })
	return inst
}

func TestJoinAndServe(t *testing.T) {
	e := newEnv(t)
	e.startNode(t, time.Second)
	inc := bustest.Connect(t, e.url)
	inst := newInstance(t, inc, instance.Config{Service: "echo", Version: "1.2.3", Metadata: map[string]string{"team": "edge"}},
		map[string]instance.Handler{"say": echoHandler})
	if err := events.ValidateID(inst.ID()); err != nil {
		t.Fatal(err)
	}
	e.waitRegistered(t, inst, "echo", time.Second)
	entry, _ := e.kv.Instances.Get(context.Background(), events.InstanceKey("echo", inst.ID()))
	rec, _ := events.DecodeInstanceRecord(entry.Value())
	if rec.Version != "1.2.3" || rec.Weight != 100 || rec.Metadata["team"] != "edge" || rec.Endpoints[0].Name != "say" || rec.Hostname == "" {
		t.Errorf("record %+v", rec)
	}
	for _, subject := range []string{subjects.Svc("echo", "say"), subjects.Inst(inst.ID(), "say")} {
		m, err := e.nc.Request(subject, []byte("hi"), time.Second)
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		if string(m.Data) != "hi" || m.Header.Get(events.HeaderInstance) != inst.ID() {
			t.Errorf("%s: reply %q, headers %v", subject, m.Data, m.Header)
		}
	}
}

func TestHandlerErrorsAndHeartbeatLoad(t *testing.T) {
	e := newEnv(t)
	inc := bustest.Connect(t, e.url)
	release := make(chan struct{})
	inst := newInstance(t, inc, instance.Config{Service: "echo", Capacity: 8}, map[string]instance.Handler{
		"fail": func(context.Context, *nats.Msg) ([]byte, error) {
			return nil, &instance.Error{Code: 409, Message: "busy elsewhere"}
		},
		"oops": func(context.Context, *nats.Msg) ([]byte, error) { return nil, errors.New("disk on fire") },
		"hold": func(context.Context, *nats.Msg) ([]byte, error) { <-release; return nil, nil },
	})
	tests := []struct {
		endpoint string
		code     int
		text     string
	}{{"fail", 409, "busy elsewhere"}, {"oops", 500, "disk on fire"}}
	for _, tt := range tests {
		m, err := e.nc.Request(subjects.Inst(inst.ID(), tt.endpoint), nil, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		code, text, ok := events.ReplyError(m)
		if !ok || code != tt.code || text != tt.text || m.Header.Get(events.HeaderInstance) != inst.ID() {
			t.Errorf("%s: code %d text %q headers %v", tt.endpoint, code, text, m.Header)
		}
	}
	// Two requests held: the heartbeat reply reports them.
	for range 2 {
		e.nc.PublishRequest(subjects.Inst(inst.ID(), "hold"), e.nc.NewRespInbox(), nil)
	}
	bustest.Eventually(t, 2*time.Second, func() error {
		m, err := e.nc.Request(subjects.Heartbeat(inst.ID()), []byte(`{"node":"x","seq":1}`), time.Second)
		if err != nil {
			return err
		}
		r, err := events.DecodeHeartbeatReply(m.Data)
		if err != nil {
			return err
		}
		if r.Inflight != 2 || r.Capacity != 8 || r.Status != events.Passing || r.ID != inst.ID() {
			return fmt.Errorf("heartbeat reply %+v", r)
		}
		return nil
	})
	close(release)
	inst.SetStatus(events.Warning)
	m, err := e.nc.Request(subjects.Heartbeat(inst.ID()), []byte(`{}`), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := events.DecodeHeartbeatReply(m.Data); r.Status != events.Warning {
		t.Errorf("after SetStatus(warning): %+v", r)
	}
}

// Shutdown deregisters, then finishes every request already taken: none
// fails, and afterwards nothing is listening.
func TestShutdownDrains(t *testing.T) {
	e := newEnv(t)
	e.startNode(t, time.Second)
	health := make(chan events.HealthEvent, 10)
	e.nc.Subscribe(subjects.HealthAll(), func(m *nats.Msg) {
		var ev events.HealthEvent
		json.Unmarshal(m.Data, &ev)
		health <- ev
	})
	inc := bustest.Connect(t, e.url)
	started := make(chan struct{}, 10)
	inst := newInstance(t, inc, instance.Config{Service: "echo"}, map[string]instance.Handler{
		"slow": func(_ context.Context, m *nats.Msg) ([]byte, error) {
			started <- struct{}{}
			time.Sleep(300 * time.Millisecond) // the work being drained
			return m.Data, nil
		},
	})
	e.waitRegistered(t, inst, "echo", time.Second)

	const n = 5
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			m, err := e.nc.Request(subjects.Svc("echo", "slow"), fmt.Append(nil, i), 5*time.Second)
			if err == nil && string(m.Data) != fmt.Sprint(i) {
				err = fmt.Errorf("reply %q", m.Data)
			}
			errs <- err
		})
	}
	for range n {
		<-started
	}
	if err := inst.Shutdown(t.Context()); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("request during drain: %v", err)
		}
	}
	if _, err := e.status(inst.ID(), "echo"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("record after shutdown: %v", err)
	}
	if _, err := e.nc.Request(subjects.Svc("echo", "slow"), nil, time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("request after shutdown: %v, want no responders", err)
	}
	deadline := time.After(time.Second)
	for {
		select {
		case ev := <-health:
			if ev.Status == events.Deregistered && ev.ID == inst.ID() {
				if ev.Reason != "shutdown" {
					t.Errorf("reason %q", ev.Reason)
				}
				if err := inst.Shutdown(t.Context()); err != nil {
					t.Errorf("second shutdown: %v", err)
				}
				return
			}
		case <-deadline:
			t.Fatal("no deregistered event")
		}
	}
}

// An instance whose record vanished (an operator deleted it, or discovery
// lost it) is no longer heartbeated, and announces itself again.
func TestAnnouncesAgainWhenNotHeartbeated(t *testing.T) {
	e := newEnv(t)
	e.startNode(t, 100*time.Millisecond)
	inc := bustest.Connect(t, e.url)
	inst := newInstance(t, inc, instance.Config{Service: "echo", HeartbeatInterval: 100 * time.Millisecond},
		map[string]instance.Handler{"say": echoHandler})
	e.waitRegistered(t, inst, "echo", time.Second)
	if err := e.kv.Instances.Delete(t.Context(), events.InstanceKey("echo", inst.ID())); err != nil {
		t.Fatal(err)
	}
	// It comes back by itself once three intervals pass without a beat.
	e.waitRegistered(t, inst, "echo", 2*time.Second)
}

// An instance started before any discovery node is registered as soon as
// a node starts: the node's discover makes it announce at once.
func TestDiscoverBringsEarlyInstancesIn(t *testing.T) {
	e := newEnv(t)
	inc := bustest.Connect(t, e.url)
	// A long interval: only the discover request can explain a quick
	// registration.
	inst := newInstance(t, inc, instance.Config{Service: "echo", HeartbeatInterval: time.Minute},
		map[string]instance.Handler{"say": echoHandler})
	e.startNode(t, time.Second)
	e.waitRegistered(t, inst, "echo", 2*time.Second)
	// Leave while the node is up: a deregister sent just as the node's
	// connection closes may reach it and wait a whole (minute) interval.
	if err := inst.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestDrainWeight(t *testing.T) {
	e := newEnv(t)
	e.startNode(t, time.Second)
	inc := bustest.Connect(t, e.url)
	inst := newInstance(t, inc, instance.Config{Service: "echo", Drain: true}, map[string]instance.Handler{"say": echoHandler})
	weight := func() int {
		entry, err := e.kv.Instances.Get(context.Background(), events.InstanceKey("echo", inst.ID()))
		if err != nil {
			return -1
		}
		r, _ := events.DecodeInstanceRecord(entry.Value())
		return r.Weight
	}
	bustest.Eventually(t, time.Second, func() error {
		if w := weight(); w != 0 {
			return fmt.Errorf("weight %d, want 0", w)
		}
		return nil
	})
	if err := inst.SetWeight(250); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, time.Second, func() error {
		if w := weight(); w != 250 {
			return fmt.Errorf("weight %d, want 250", w)
		}
		return nil
	})
}

func TestConfigErrors(t *testing.T) {
	e := newEnv(t)
	for _, cfg := range []instance.Config{{Service: ""}, {Service: "Echo"}, {Service: "echo", Weight: -1}, {Service: "echo", Weight: 10001}} {
		if _, err := instance.New(e.nc, cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	inst, err := instance.New(e.nc, instance.Config{Service: "echo"})
	if err != nil {
		t.Fatal(err)
	}
	if err := inst.Handle("a.b", echoHandler); err == nil {
		t.Error("Handle accepted a dotted endpoint")
	}
	if err := inst.Start(t.Context()); err == nil {
		t.Error("Start without endpoints accepted")
	}
}

func TestStartOnClosedConnectionLeavesNothing(t *testing.T) {
	e := newEnv(t)
	nc := bustest.Connect(t, e.url)
	inst, err := instance.New(nc, instance.Config{Service: "echo"})
	if err != nil {
		t.Fatal(err)
	}
	if err := inst.Handle("say", echoHandler); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	if err := inst.Start(t.Context()); err == nil {
		t.Fatal("Start on a closed connection succeeded")
	}
	if err := inst.Shutdown(t.Context()); err != nil {
		t.Errorf("Shutdown after a failed Start: %v", err)
	}
}

// An instance is a NATS micro service: `nats micro info` finds it by its
// service name (dots made underscores), its hail id in the metadata, both
// subjects of each endpoint listed, and `nats micro stats` counts requests.
func TestInstanceIsMicroService(t *testing.T) {
	e := newEnv(t)
	inst := newInstance(t, bustest.Connect(t, e.url), instance.Config{Service: "com.example.login", Version: "2.0.0-rc.1"},
		map[string]instance.Handler{"say": echoHandler})
	if _, err := e.nc.Request(subjects.Inst(inst.ID(), "say"), []byte("hi"), time.Second); err != nil {
		t.Fatal(err)
	}
	m, err := e.nc.Request("$SRV.INFO.com_example_login", nil, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info micro.Info
	if err := json.Unmarshal(m.Data, &info); err != nil {
		t.Fatal(err)
	}
	if info.Metadata[instance.MetaID] != inst.ID() || info.Metadata[instance.MetaService] != "com.example.login" || info.Version != "2.0.0-rc.1" {
		t.Errorf("info %+v: want hail id, service and version", info)
	}
	var got []string
	for _, ep := range info.Endpoints {
		got = append(got, ep.Name+" "+ep.Subject+" "+ep.QueueGroup)
	}
	want := []string{
		"say " + subjects.Svc("com.example.login", "say") + " " + subjects.QueueGroup("com.example.login"),
		"say " + subjects.Inst(inst.ID(), "say") + " ",
	}
	if !slices.Equal(got, want) {
		t.Errorf("endpoints %q, want %q", got, want)
	}
	// micro counts a request after its handler returns, which is after
	// the handler's reply went out: the count may trail the answer.
	bustest.Eventually(t, 5*time.Second, func() error {
		m, err := e.nc.Request("$SRV.STATS.com_example_login", nil, time.Second)
		if err != nil {
			return err
		}
		var stats micro.Stats
		if err := json.Unmarshal(m.Data, &stats); err != nil {
			return err
		}
		if len(stats.Endpoints) != 2 || stats.Endpoints[1].NumRequests != 1 {
			return fmt.Errorf("stats %+v: want the request on the instance's own subject counted", stats.Endpoints)
		}
		return nil
	})
}
