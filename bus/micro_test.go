package bus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

func TestServiceSeenByMicroTools(t *testing.T) {
	s := bustest.RunServer(t)
	nc := bustest.Connect(t, s.ClientURL())
	h := func(m *nats.Msg) { _ = nc.Publish(m.Reply, append([]byte("re: "), m.Data...)) }
	svc, err := bus.AddService(nc, micro.Config{Name: bus.MicroName("com.example.login"), Version: "v2-beta", Metadata: map[string]string{"hail_id": "x"}},
		[]bus.Endpoint{{Name: "say", Subject: "hail.svc.com.example.login.say", Queue: "hail.com.example.login", Handler: h}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })

	reply, err := nc.Request("hail.svc.com.example.login.say", []byte("hi"), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(reply.Data), "re: hi"; got != want {
		t.Errorf("reply = %q, want %q", got, want)
	}

	// What `nats micro info` and `nats micro stats` ask for.
	var info micro.Info
	request(t, nc, "$SRV.INFO.com_example_login", &info)
	if info.Name != "com_example_login" || info.Version != "0.0.0" || info.Metadata["version"] != "v2-beta" || info.Metadata["hail_id"] != "x" {
		t.Errorf("info = %+v, want name com_example_login, version 0.0.0, metadata version v2-beta and hail_id x", info)
	}
	if len(info.Endpoints) != 1 || info.Endpoints[0].Subject != "hail.svc.com.example.login.say" || info.Endpoints[0].QueueGroup != "hail.com.example.login" {
		t.Errorf("endpoints = %+v", info.Endpoints)
	}
	// micro counts a request after its handler returns, which is after
	// the handler's reply went out: the count may trail the answer.
	bustest.Eventually(t, 5*time.Second, func() error {
		var stats micro.Stats
		request(t, nc, "$SRV.STATS.com_example_login", &stats)
		if len(stats.Endpoints) != 1 || stats.Endpoints[0].NumRequests != 1 {
			return fmt.Errorf("stats = %+v, want one endpoint with 1 request", stats.Endpoints)
		}
		return nil
	})
}

func TestServiceStopWaitsForHeldMessages(t *testing.T) {
	s := bustest.RunServer(t)
	nc := bustest.Connect(t, s.ClientURL())
	pub := bustest.Connect(t, s.ClientURL())
	release := make(chan struct{})
	var handled atomic.Int64
	svc, err := bus.AddService(nc, micro.Config{Name: "slow", Version: "1.0.0"}, []bus.Endpoint{{Name: "work", Subject: "work", Handler: func(*nats.Msg) {
		<-release
		handled.Add(1)
	}}})
	if err != nil {
		t.Fatal(err)
	}
	// The subscription reaches the server before anything is published.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	const n = 50
	for range n {
		if err := pub.Publish("work", nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	// The server has every message before Stop unsubscribes: the first is
	// held in the handler, the rest are on their way or queued in the client.
	stopped := make(chan error, 1)
	go func() { stopped <- svc.Stop(context.Background()) }()
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) while a handler was still held", err)
	case <-time.After(100 * time.Millisecond): // a window to catch an early return, not a synchronisation
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if got := handled.Load(); got != n {
		t.Errorf("handled %d of %d messages before Stop returned", got, n)
	}
}

func request(t *testing.T, nc *nats.Conn, subject string, v any) {
	t.Helper()
	m, err := nc.Request(subject, nil, 2*time.Second)
	if err != nil {
		t.Fatalf("request %s: %v", subject, err)
	}
	if err := json.Unmarshal(m.Data, v); err != nil {
		t.Fatalf("decode %s: %v", subject, err)
	}
}
