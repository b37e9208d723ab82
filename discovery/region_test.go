package discovery_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/bus/embedded"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/internal/regiontest"
)

// region is a 3-server JetStream cluster with discovery nodes, each on its
// own connection to its own server, and a fleet of fake instances.
type region struct {
	t     *testing.T
	c     *embedded.Cluster
	nc    *nats.Conn
	kv    *bus.Buckets
	cfg   discovery.Config
	nodes []*member
}

type member struct {
	once   sync.Once
	n      *discovery.Node
	nc     *nats.Conn
	server int
	cancel context.CancelFunc
	done   chan error
}

func newRegion(t *testing.T, cfg discovery.Config) *region {
	t.Helper()
	c := bustest.RunCluster(t, 3)
	nc := bustest.Connect(t, c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	return &region{t: t, c: c, nc: nc, kv: bustest.Buckets(t, nc), cfg: cfg}
}

// start runs a discovery node connected to server (and failing over to
// the others) and waits until it serves.
func (r *region) start(server int, nodeID string) *member {
	r.t.Helper()
	nc := bustest.Connect(r.t, r.c.ClientURL(server), nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	kv, err := bus.EnsureBuckets(r.t.Context(), nc, bus.BucketOptions{})
	if err != nil {
		r.t.Fatal(err)
	}
	cfg := r.cfg
	cfg.NodeID = nodeID
	n, err := discovery.New(nc, kv, cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{n: n, nc: nc, server: server, cancel: cancel, done: make(chan error, 1)}
	go func() { m.done <- n.Run(ctx) }()
	r.t.Cleanup(func() { m.stop(r.t) })
	select {
	case <-n.Serving():
	case err := <-m.done:
		m.done <- err
		r.t.Fatalf("node stopped before serving: %v", err)
	case <-time.After(15 * time.Second):
		r.t.Fatal("node not serving within 15s")
	}
	r.nodes = append(r.nodes, m)
	return m
}

// stop ends the node cleanly: it leaves hail_nodes.
func (m *member) stop(t *testing.T) {
	m.once.Do(func() {
		m.cancel()
		select {
		case <-m.done:
		case <-time.After(15 * time.Second):
			t.Error("node did not stop within 15s")
		}
		m.nc.Close()
	})
}

// crash cuts the node off at once, as a killed process: its connection
// closes and its hail_nodes entry stays until it lapses.
func (m *member) crash() { m.nc.Close() }

// fleet is many fake instances spread over a few connections; each
// records who heartbeated it and when.
type fleet struct {
	t     *testing.T
	conns []*nats.Conn
	insts []*inst
	byID  map[string]*inst
}

type inst struct {
	id     string
	mu     sync.Mutex
	beats  []beat
	refuse map[string]bool // node ids it does not answer
}

type beat struct {
	node string
	at   time.Time
}

func (r *region) fleet(n int) *fleet {
	r.t.Helper()
	f := &fleet{t: r.t, byID: map[string]*inst{}}
	for i := range 8 {
		f.conns = append(f.conns, bustest.Connect(r.t, r.c.ClientURL(i%3), nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond)))
	}
	for i := range n {
		in := &inst{id: uuid.NewString(), refuse: map[string]bool{}}
		nc := f.conns[i%len(f.conns)]
		_, err := nc.Subscribe(subjects.Heartbeat(in.id), func(m *nats.Msg) {
			var hb events.Heartbeat
			_ = json.Unmarshal(m.Data, &hb)
			in.mu.Lock()
			in.beats = append(in.beats, beat{node: hb.Node, at: time.Now()})
			refused := in.refuse[hb.Node]
			in.mu.Unlock()
			if !refused {
				_ = m.Respond(fmt.Appendf(nil, `{"id":%q,"status":"passing"}`, in.id))
			}
		})
		if err != nil {
			r.t.Fatal(err)
		}
		f.insts = append(f.insts, in)
		f.byID[in.id] = in
	}
	for _, nc := range f.conns {
		if err := nc.Flush(); err != nil {
			r.t.Fatal(err)
		}
	}
	// Announce from 16 goroutines: a thousand one after the other would
	// take a while on a replicated bucket.
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < n; i += 16 {
				a, _ := json.Marshal(events.Announce{ID: f.insts[i].id, Service: "echo", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100})
				// A node shedding a burst answers 503: tried again, as
				// every client does (fakeinst.Ack).
				if err := fakeinst.Ack(f.conns[i%len(f.conns)], subjects.Announce("echo"), a); err != nil {
					errs <- fmt.Errorf("announce %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		r.t.Fatal(err)
	}
	return f
}

// since returns each instance's beats after t0.
func (f *fleet) since(t0 time.Time) map[string][]beat {
	out := make(map[string][]beat, len(f.insts))
	for _, in := range f.insts {
		in.mu.Lock()
		for _, b := range in.beats {
			if !b.at.Before(t0) {
				out[in.id] = append(out[in.id], b)
			}
		}
		in.mu.Unlock()
	}
	return out
}

// owners maps each instance to the nodes that heartbeated it after t0.
func (f *fleet) owners(t0 time.Time) map[string][]string {
	out := map[string][]string{}
	for id, bs := range f.since(t0) {
		var nodes []string
		for _, b := range bs {
			if !slices.Contains(nodes, b.node) {
				nodes = append(nodes, b.node)
			}
		}
		out[id] = nodes
	}
	return out
}

// settled waits until, over a window of window, every instance was
// heartbeated by exactly one node, and returns the window's start.
func (r *region) settled(f *fleet, window time.Duration) time.Time {
	r.t.Helper()
	var t0 time.Time
	bustest.Eventually(r.t, 20*time.Second, func() error {
		t0 = time.Now()
		<-time.After(window) // a measurement window, not a synchronisation
		owners := f.owners(t0)
		for _, in := range f.insts {
			if n := len(owners[in.id]); n != 1 {
				return fmt.Errorf("instance %s heartbeated by %d nodes in %s", in.id, n, window)
			}
		}
		return nil
	})
	return t0
}

// threeNodes starts a region of three nodes, one per server, with n
// instances, and returns it once ownership has settled, with the start of
// the settled window.
func threeNodes(t *testing.T, n int) (*region, *fleet, time.Time) {
	t.Helper()
	r := newRegion(t, discovery.Config{})
	for i := range 3 {
		r.start(i, "")
	}
	f := r.fleet(n)
	return r, f, r.settled(f, 2*time.Second)
}

// 3 nodes, 300 instances: each instance has one owner and receives one
// heartbeat per interval.
func TestRegionOneHeartbeatPerInterval(t *testing.T) {
	_, f, _ := threeNodes(t, 300)

	t0 := time.Now()
	<-time.After(5 * time.Second) // the measurement window
	perNode := map[string]int{}
	for id, bs := range f.since(t0) {
		if len(bs) < 4 || len(bs) > 6 {
			t.Errorf("instance %s: %d heartbeats in 5 intervals", id, len(bs))
		}
		for i := 1; i < len(bs); i++ {
			if bs[i].node != bs[0].node {
				t.Errorf("instance %s heartbeated by %s and %s", id, bs[0].node, bs[i].node)
			}
			if gap := bs[i].at.Sub(bs[i-1].at); gap < 500*time.Millisecond {
				t.Errorf("instance %s: two heartbeats %s apart", id, gap)
			}
		}
		if len(bs) > 0 {
			perNode[bs[0].node]++
		}
	}
	if len(perNode) != 3 {
		t.Fatalf("owners: %v, want 3 nodes", perNode)
	}
	for node, n := range perNode {
		if n < 60 {
			t.Errorf("node %s owns %d of 300", node, n)
		}
	}
	t.Logf("instances per node: %v", perNode)
}

func (r *region) watchHealth() *healthEvents {
	return (&env{&regiontest.Region{T: r.t, NC: r.nc}}).watchHealth()
}

// byOwner groups the instances of a settled window by owning node.
func byOwner(f *fleet, t0 time.Time) map[string][]string {
	out := map[string][]string{}
	for id, nodes := range f.owners(t0) {
		out[nodes[0]] = append(out[nodes[0]], id)
	}
	return out
}

// takeover waits until every instance in ids has been heartbeated after t0
// by a node other than gone, and returns the longest wait.
func takeover(t *testing.T, f *fleet, ids []string, gone []string, t0 time.Time, within time.Duration) time.Duration {
	t.Helper()
	var worst time.Duration
	bustest.Eventually(t, within+10*time.Second, func() error {
		worst = 0
		beats := f.since(t0)
		for _, id := range ids {
			first := time.Duration(-1)
			for _, b := range beats[id] {
				if !slices.Contains(gone, b.node) {
					first = b.at.Sub(t0)
					break
				}
			}
			if first < 0 {
				return fmt.Errorf("instance %s not heartbeated since the kill", id)
			}
			worst = max(worst, first)
		}
		return nil
	})
	// within is the design's bound (node TTL + 1 interval), met on a
	// quiet machine (the test logs the figure the README quotes); under a
	// loaded CI box every timer of the region runs late, so the test fails
	// only past three times it. What it asserts beside, none critical and
	// one claim per instance, holds at any load.
	if worst > 3*within {
		t.Errorf("takeover took up to %s, want within %s (3 x the design bound %s)", worst, 3*within, within)
	} else if worst > within {
		t.Logf("takeover took up to %s, past the design bound %s (a loaded machine)", worst, within)
	}
	return worst
}

func (m *member) owned(owners map[string][]string) []string { return owners[m.n.ID()] }

// lastSeq is the registry stream's last sequence: its writes so far.
func (r *region) lastSeq() uint64 {
	r.t.Helper()
	st, err := r.kv.Instances.Status(r.t.Context())
	if err != nil {
		r.t.Fatal(err)
	}
	return st.(*jetstream.KeyValueBucketStatus).StreamInfo().State.LastSeq
}
