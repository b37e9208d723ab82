package main

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/proctest"
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

// An edit of weight in the config file is announced by the running
// instance; a broken edit is refused naming the key and it keeps serving.
func TestConfigFileWeightEdit(t *testing.T) {
	s := bustest.RunServer(t)
	nc := bustest.Connect(t, s.ClientURL())
	weights := make(chan int, 100)
	// Stand in for discovery: take every announce and ack it.
	if _, err := nc.Subscribe("hail.announce.echo", func(m *nats.Msg) {
		if a, err := events.DecodeAnnounce(m.Data); err == nil {
			weights <- a.Weight
		}
		_ = m.Respond([]byte(`{"ok":true}`))
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "echo.yaml")
	bustest.ReplaceFile(t, path, "weight: 100\n")
	var out testlog.Buffer
	proctest.Go(t, func(ctx context.Context) error {
		return run(ctx, []string{"--config", path, "--nats-url", s.ClientURL()}, func(string) string { return "" }, &out)
	})
	waitWeight := func(want int) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case w := <-weights:
				if w == want {
					return
				}
			case <-timeout:
				t.Fatalf("no announce with weight %d:\n%s", want, out.String())
			}
		}
	}
	waitWeight(100)
	bustest.ReplaceFile(t, path, "weight: 40\n")
	waitWeight(40)

	bustest.ReplaceFile(t, path, "weight: -1\n")
	var refusal string
	bustest.Eventually(t, 10*time.Second, func() error {
		var ok bool
		if refusal, ok = out.Line("config file edit refused"); !ok {
			return errors.New("no refusal logged")
		}
		return nil
	})
	if !strings.Contains(refusal, "weight: -1 is out of range") {
		t.Errorf("refusal does not name weight: %s", refusal)
	}
	if r, err := nc.Request("hail.svc.echo.say", []byte("hi"), 2*time.Second); err != nil || string(r.Data) != "hi" {
		t.Errorf("echo stopped serving after a broken edit: %v %v", r, err)
	}
}
