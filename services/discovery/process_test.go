package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/testlog"
	"github.com/nats-io/nats.go"
)

// buildBinary builds this program once per test binary run.
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the discovery binary; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "discovery")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type process struct {
	cmd *exec.Cmd
	out *testlog.Buffer
}

func startProcess(t *testing.T, bin, url string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin), out: &testlog.Buffer{}}
	p.cmd.Env = append(os.Environ(), "HAIL_NATS_URL="+url)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	return p
}

func (p *process) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("discovery exited with %v\n%s", err, p.out)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("discovery did not stop on SIGTERM\n%s", p.out)
	}
}

func nodeCount(t *testing.T, nc *nats.Conn) int {
	kv := bustest.Buckets(t, nc)
	lister, err := kv.Nodes.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range lister.Keys() {
		n++
	}
	return n
}

// The binary as an outside tester runs it: announce a raw instance, stop
// the node with SIGTERM while the instance keeps answering, start a new
// one, and see no critical or deregistered event.
func TestProcessRestartKeepsInstances(t *testing.T) {
	bin := buildBinary(t)
	s := bustest.RunServer(t)
	nc := bustest.Connect(t, s.ClientURL())

	bad := make(chan events.HealthEvent, 100)
	nc.Subscribe("hail.health.>", func(m *nats.Msg) {
		var ev events.HealthEvent
		json.Unmarshal(m.Data, &ev)
		if ev.Status == events.Critical || ev.Status == events.Deregistered {
			bad <- ev
		}
	})
	ids := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	for _, id := range ids {
		nc.Subscribe("hail.hb."+id, func(m *nats.Msg) {
			m.Respond(fmt.Appendf(nil, `{"id":%q,"status":"passing"}`, id))
		})
	}
	nc.Flush()

	first := startProcess(t, bin, s.ClientURL())
	announce := func(id string) error {
		m, err := nc.Request("hail.announce.echo", fmt.Appendf(nil, `{"id":%q,"service":"echo","endpoints":[{"name":"say"}]}`, id), time.Second)
		if err != nil {
			return err
		}
		if !strings.Contains(string(m.Data), `"ok":true`) {
			return errors.New(string(m.Data))
		}
		return nil
	}
	bustest.Eventually(t, 20*time.Second, func() error { return announce(ids[0]) })
	for _, id := range ids[1:] {
		if err := announce(id); err != nil {
			t.Fatal(err)
		}
	}
	if n := nodeCount(t, nc); n != 1 {
		t.Fatalf("%d nodes registered", n)
	}
	first.stop(t)
	if n := nodeCount(t, nc); n != 0 {
		t.Errorf("a cleanly stopped node left %d entries in hail_nodes", n)
	}

	second := startProcess(t, bin, s.ClientURL())
	// Ready once it is in hail_nodes; then let it run a few rounds.
	bustest.Eventually(t, 20*time.Second, func() error {
		if nodeCount(t, nc) != 1 {
			return errors.New("new node not registered")
		}
		return nil
	})
	var recs []events.InstanceRecord
	bustest.Eventually(t, 5*time.Second, func() error {
		m, err := nc.Request("hail.discovery.instances", []byte(`{"service":"echo","status":"passing"}`), time.Second)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(m.Data, &recs); err != nil {
			return err
		}
		if len(recs) != 3 {
			return fmt.Errorf("%d passing records", len(recs))
		}
		return nil
	})
	// Four intervals: long enough for a wrongly judged instance to go
	// critical (three missed heartbeats).
	deadline := time.After(4 * time.Second)
	select {
	case ev := <-bad:
		t.Fatalf("event after restart: %+v\n%s", ev, second.out)
	case <-deadline:
	}
	second.stop(t)
}
