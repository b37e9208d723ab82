package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/proctest"
	"github.com/nats-io/nats.go"
)

// buildBinary builds this program for the test.
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the discovery binary; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "discovery")
	if err := proctest.Build(".", bin, "."); err != nil {
		t.Fatal(err)
	}
	return bin
}

// startProcess runs the binary against the NATS server at url.
func startProcess(t *testing.T, name, bin, url string) *proctest.Process {
	t.Helper()
	return proctest.Start(t, name, bin, map[string]string{"HAIL_NATS_URL": url})
}

// flaps delivers every critical or deregistered event seen on nc.
func flaps(t *testing.T, nc *nats.Conn) <-chan events.HealthEvent {
	t.Helper()
	bad := make(chan events.HealthEvent, 100)
	if _, err := nc.Subscribe("hail.health.>", func(m *nats.Msg) {
		var ev events.HealthEvent
		if json.Unmarshal(m.Data, &ev) == nil && (ev.Status == events.Critical || ev.Status == events.Deregistered) {
			bad <- ev
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return bad
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

	bad := flaps(t, nc)
	ids := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	for _, id := range ids {
		nc.Subscribe("hail.hb."+id, func(m *nats.Msg) {
			m.Respond(fmt.Appendf(nil, `{"id":%q,"status":"passing"}`, id))
		})
	}
	nc.Flush()

	first := startProcess(t, "first", bin, s.ClientURL())
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
	first.Stop(t)
	if n := nodeCount(t, nc); n != 0 {
		t.Errorf("a cleanly stopped node left %d entries in hail_nodes", n)
	}

	second := startProcess(t, "second", bin, s.ClientURL())
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
		t.Fatalf("event after restart: %+v", ev)
	case <-deadline:
	}
	second.Stop(t)
}

// Three binaries started at once on a 3-server cluster (as the hidden
// region tests run them): they agree on the buckets, share 60 instances
// with one owner each, and when one is killed (SIGKILL) its instances are
// heartbeated by the others with no critical event.
func TestProcessRegion(t *testing.T) {
	bin := buildBinary(t)
	c := bustest.RunCluster(t, 3)
	nc := bustest.Connect(t, c.URLs())
	bad := flaps(t, nc)
	var procs []*proctest.Process
	for i := range 3 {
		procs = append(procs, startProcess(t, fmt.Sprintf("discovery-%d", i), bin, c.ClientURL(i)))
	}
	bustest.Eventually(t, 30*time.Second, func() error {
		if n := nodeCount(t, nc); n != 3 {
			return fmt.Errorf("%d nodes in hail_nodes", n)
		}
		return nil
	})
	type beat struct {
		node string
		at   time.Time
	}
	var mu sync.Mutex
	beats := map[string][]beat{}
	var ids []string
	for range 60 {
		id := uuid.NewString()
		ids = append(ids, id)
		nc.Subscribe("hail.hb."+id, func(m *nats.Msg) {
			var hb events.Heartbeat
			json.Unmarshal(m.Data, &hb)
			mu.Lock()
			beats[id] = append(beats[id], beat{hb.Node, time.Now()})
			mu.Unlock()
			m.Respond(fmt.Appendf(nil, `{"id":%q,"status":"passing"}`, id))
		})
	}
	nc.Flush()
	for _, id := range ids {
		m, err := nc.Request("hail.announce.echo", fmt.Appendf(nil, `{"id":%q,"service":"echo","endpoints":[{"name":"say"}]}`, id), 5*time.Second)
		if err != nil || !strings.Contains(string(m.Data), `"ok":true`) {
			t.Fatalf("announce: %v %s", err, m.Data)
		}
	}
	owners := func(since time.Time) map[string][]string {
		mu.Lock()
		defer mu.Unlock()
		out := map[string][]string{}
		for _, id := range ids {
			var nodes []string
			for _, b := range beats[id] {
				if b.at.After(since) && !slices.Contains(nodes, b.node) {
					nodes = append(nodes, b.node)
				}
			}
			out[id] = nodes
		}
		return out
	}
	var byNode map[string][]string
	bustest.Eventually(t, 20*time.Second, func() error {
		t0 := time.Now()
		<-time.After(2 * time.Second) // a measurement window
		byNode = map[string][]string{}
		for id, nodes := range owners(t0) {
			if len(nodes) != 1 {
				return fmt.Errorf("%s heartbeated by %v", id, nodes)
			}
			byNode[nodes[0]] = append(byNode[nodes[0]], id)
		}
		if len(byNode) != 3 {
			return fmt.Errorf("owners %d", len(byNode))
		}
		return nil
	})
	// Kill the process on server 0; find its node id from its log.
	victim := procs[0]
	victim.Kill()
	var orphans []string
	for node, owned := range byNode {
		if strings.Contains(victim.Output(), node) {
			orphans = owned
		}
	}
	if len(orphans) == 0 {
		t.Fatal("the killed node's instances not found in its log")
	}
	t0 := time.Now()
	bustest.Eventually(t, 15*time.Second, func() error {
		for id, nodes := range owners(t0) {
			if slices.Contains(orphans, id) && len(nodes) == 0 {
				return fmt.Errorf("%s not heartbeated since the kill", id)
			}
		}
		return nil
	})
	t.Logf("%d instances of the killed process heartbeated again after %s", len(orphans), time.Since(t0).Round(time.Millisecond))
	select {
	case ev := <-bad:
		t.Fatalf("event: %+v", ev)
	case <-time.After(3 * time.Second):
	}
	for _, p := range procs[1:] {
		p.Stop(t)
	}
}
