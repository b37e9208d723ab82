// Package fakeinst is a service instance that speaks PROTOCOL.md by hand,
// with no SDK behind it, for tests of discovery and routing: what a hidden
// test or a non-Go service would do.
package fakeinst

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
)

// Options describe an instance.
type Options struct {
	Service   string
	Endpoints []string // default ["say"]
	Weight    int      // default 100
	Drain     bool     // announce weight 0
	// Delay is how long each request takes before its reply.
	Delay time.Duration
	// Conn is the connection to use (a test's own, so thousands of
	// instances need not dial); nil: one of its own, closed when the test
	// ends.
	Conn *nats.Conn
	// Edit changes its announce (v1.1 fields, say) before it is sent.
	Edit func(*events.Announce)
	// BeatDelay is how late it answers each heartbeat.
	BeatDelay time.Duration
	// Manual: Start does not announce; the test sends AnnounceData itself.
	Manual bool
	// Status is what it reports in heartbeat replies; default passing.
	Status events.Status
	// Scoped announces scoped (v1.2) and listens on the scoped subjects.
	Scoped bool
	// AnnounceConn announces its connection (PROTOCOL v1.4), so that
	// closing it (Kill) makes it critical at once.
	AnnounceConn bool
}

// Instance is one fake instance on its own connection.
type Instance struct {
	ID  string
	t   testing.TB
	nc  *nats.Conn
	sub events.Subjects
	o   Options

	silent   atomic.Bool
	beats    atomic.Int64
	checks   atomic.Pointer[[]events.CheckResult]
	served   atomic.Int64
	inflight atomic.Int64
	peak     atomic.Int64
}

// Start connects, subscribes the instance's subjects, announces it and
// waits for discovery's acknowledgement.
func Start(t testing.TB, url string, o Options) *Instance {
	t.Helper()
	if o.Weight == 0 {
		o.Weight = 100
	}
	if o.Drain {
		o.Weight = 0
	}
	if o.Status == "" {
		o.Status = events.Passing
	}
	if len(o.Endpoints) == 0 {
		o.Endpoints = []string{"say"}
	}
	nc := o.Conn
	if nc == nil {
		var err error
		if nc, err = nats.Connect(url); err != nil {
			t.Fatalf("fake instance: connect: %v", err)
		}
		t.Cleanup(nc.Close)
	}
	i := &Instance{ID: uuid.NewString(), t: t, nc: nc, o: o}
	subs := map[string]nats.MsgHandler{i.sub.HeartbeatOf(o.Service, i.ID, o.Scoped): i.beat}
	for _, ep := range o.Endpoints {
		subs[i.sub.InstOf(o.Service, i.ID, ep, o.Scoped)] = i.serve
	}
	for subject, h := range subs {
		if _, err := nc.Subscribe(subject, h); err != nil {
			t.Fatalf("fake instance: subscribe %s: %v", subject, err)
		}
	}
	for _, ep := range o.Endpoints {
		if _, err := nc.QueueSubscribe(i.sub.Svc(o.Service, ep), i.sub.QueueGroup(o.Service), i.serve); err != nil {
			t.Fatalf("fake instance: subscribe: %v", err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if !o.Manual {
		i.Announce()
	}
	return i
}

// Announce (again) with the current options.
func (i *Instance) Announce() {
	i.t.Helper()
	if err := Ack(i.nc, i.sub.Announce(i.o.Service), i.AnnounceData()); err != nil {
		i.t.Fatalf("fake instance: %v", err)
	}
}

// Ack sends a control request (an announce, a deregister) and wants it
// taken. A 503 (a busy node shedding announces) is tried again, backing
// off, as the SDK does, for up to 30 s.
func Ack(nc *nats.Conn, subject string, data []byte) error {
	deadline := time.Now().Add(30 * time.Second)
	for backoff := 10 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		reply, err := nc.Request(subject, data, 10*time.Second)
		if err != nil {
			return fmt.Errorf("%s: %w", subject, err)
		}
		code, text, isErr := events.ReplyError(reply)
		if !isErr {
			return nil
		}
		if code != events.CodeUnavailable || time.Now().After(deadline) {
			return fmt.Errorf("%s refused: %d %s", subject, code, text)
		}
		time.Sleep(backoff) // a client's backoff, not a test's synchronisation
	}
}

// SetWeight announces a new weight.
// AnnounceData is the instance's announce, as PROTOCOL.md writes it.
func (i *Instance) AnnounceData() []byte {
	eps := make([]events.Endpoint, len(i.o.Endpoints))
	for k, ep := range i.o.Endpoints {
		eps[k] = events.Endpoint{Name: ep}
	}
	a := events.Announce{ID: i.ID, Service: i.o.Service, Version: "1.0.0", Endpoints: eps, Weight: i.o.Weight, Scoped: i.o.Scoped}
	if i.o.AnnounceConn {
		if client, err := i.nc.GetClientID(); err == nil {
			a.Conn = &events.Conn{Server: i.nc.ConnectedServerId(), Client: client}
		}
	}
	if i.o.Edit != nil {
		i.o.Edit(&a)
	}
	data, err := json.Marshal(a)
	if err != nil {
		i.t.Fatal(err)
	}
	return data
}

// SetChecks makes its heartbeat replies carry cs, and report their worst
// status.
func (i *Instance) SetChecks(cs []events.CheckResult) { i.checks.Store(&cs) }

// DeregisterData is the instance's deregister at shutdown.
func (i *Instance) DeregisterData() []byte {
	data, err := json.Marshal(events.Deregister{ID: i.ID, Service: i.o.Service, Reason: "shutdown"})
	if err != nil {
		i.t.Fatal(err)
	}
	return data
}

// Service is the instance's service.
func (i *Instance) Service() string { return i.o.Service }

func (i *Instance) SetWeight(w int) {
	i.o.Weight = w
	i.Announce()
}

// Kill closes the instance's connection at once: no deregister, no reply
// to what it holds.
func (i *Instance) Kill() { i.nc.Close() }

// Served is how many requests it answered.
func (i *Instance) Served() int64 { return i.served.Load() }

// Peak is the most requests it held at once.
func (i *Instance) Peak() int64 { return i.peak.Load() }

// Inflight is how many requests it holds now.
func (i *Instance) Inflight() int64 { return i.inflight.Load() }

// Silence stops answering heartbeats (the instance still serves), so
// discovery soon records it critical.
func (i *Instance) Silence() { i.silent.Store(true) }

// Speak answers heartbeats again.
func (i *Instance) Speak() { i.silent.Store(false) }

// Beats is how many heartbeats reached it, answered or not.
func (i *Instance) Beats() int64 { return i.beats.Load() }

func (i *Instance) beat(m *nats.Msg) {
	i.beats.Add(1)
	if i.silent.Load() {
		return
	}
	r := events.HeartbeatReply{ID: i.ID, Status: i.o.Status}
	if cs := i.checks.Load(); cs != nil {
		r.Checks, r.Status = *cs, events.WorstStatus(*cs)
	}
	reply, err := json.Marshal(r)
	if err != nil {
		i.t.Errorf("fake instance: encode heartbeat reply: %v", err)
		return
	}
	if i.o.BeatDelay > 0 {
		time.AfterFunc(i.o.BeatDelay, func() { _ = m.Respond(reply) })
		return
	}
	_ = m.Respond(reply)
}

// serve replies with the instance's id after the delay.
func (i *Instance) serve(m *nats.Msg) {
	n := i.inflight.Add(1)
	for {
		p := i.peak.Load()
		if n <= p || i.peak.CompareAndSwap(p, n) {
			break
		}
	}
	reply := func() {
		i.inflight.Add(-1)
		i.served.Add(1)
		_ = m.Respond([]byte(i.ID))
	}
	if d := i.o.Delay; d > 0 {
		time.AfterFunc(d, reply)
		return
	}
	reply()
}
