package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/testlog"
	"github.com/nats-io/nats.go"
)

func TestRunAnnouncesWithFlags(t *testing.T) {
	s := bustest.RunServer(t)
	nc := bustest.Connect(t, s.ClientURL())
	announces := make(chan *nats.Msg, 10)
	// Stand in for discovery: take the announce and ack it.
	nc.Subscribe("hail.announce.>", func(m *nats.Msg) {
		announces <- m
		m.Respond([]byte(`{"ok":true}`))
	})
	nc.Flush()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var out testlog.Buffer
	go func() {
		done <- run(ctx, []string{"--name", "greeter", "--weight", "250", "--version", "2.1.0", "--az", "eu-1a"},
			func(k string) string { return map[string]string{"HAIL_NATS_URL": s.ClientURL()}[k] }, &out)
	}()
	var m *nats.Msg
	select {
	case m = <-announces:
	case <-time.After(10 * time.Second):
		t.Fatal("no announce")
	}
	if m.Subject != "hail.announce.greeter" {
		t.Errorf("announce on %s", m.Subject)
	}
	a, err := events.DecodeAnnounce(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if a.Service != "greeter" || a.Weight != 250 || a.Version != "2.1.0" || a.AZ != "eu-1a" || len(a.Endpoints) != 2 {
		t.Errorf("announce %+v", a)
	}
	r, err := nc.Request("hail.svc.greeter.slow", []byte("20"), 2*time.Second)
	if err != nil || string(r.Data) != "20" {
		t.Errorf("slow: %v %v", r, err)
	}
	r, err = nc.Request("hail.svc.greeter.slow", []byte("soon"), 2*time.Second)
	if code, text, ok := events.ReplyError(r); err != nil || !ok || code != 400 || !strings.Contains(text, "milliseconds") {
		t.Errorf("slow with bad payload: %d %q %v", code, text, err)
	}
	dereg := make(chan *nats.Msg, 1)
	nc.Subscribe("hail.deregister.greeter", func(m *nats.Msg) { dereg <- m; m.Respond([]byte(`{"ok":true}`)) })
	nc.Flush()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-dereg:
		if !strings.Contains(string(m.Data), a.ID) {
			t.Errorf("deregister %s", m.Data)
		}
	default:
		t.Error("no deregister on shutdown")
	}
}

func TestWeightZeroDrains(t *testing.T) {
	s := bustest.RunServer(t)
	nc := bustest.Connect(t, s.ClientURL())
	got := make(chan []byte, 1)
	nc.Subscribe("hail.announce.echo", func(m *nats.Msg) {
		select {
		case got <- m.Data:
		default:
		}
	})
	nc.Flush()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go run(ctx, []string{"--weight", "0", "--nats-url", s.ClientURL()}, func(string) string { return "" }, io.Discard)
	select {
	case data := <-got:
		if !strings.Contains(string(data), `"weight":0`) {
			t.Errorf("announce %s", data)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no announce")
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--weight", "-3"}, {"--name", "Echo"}, {"--capacity", "0"}} {
		err := run(context.Background(), args, func(string) string { return "" }, io.Discard)
		want := strings.TrimPrefix(args[0], "--")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("run(%v) = %v", args, err)
		}
	}
}
