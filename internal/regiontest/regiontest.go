// Package regiontest runs a real hail region for a test: an embedded NATS
// server (or cluster) with the buckets, and discovery nodes, routers and
// the console on connections of their own, each stopped and checked when
// the test ends. Every package's test env is built on it.
package regiontest

import (
	"context"
	"encoding/json"
	"errors"

	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/admin"
	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/console"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/router"
)

// Region is a region under test.
type Region struct {
	T   testing.TB
	URL string
	// NC is the test's own client, as an operator or a hidden test would
	// use.
	NC *nats.Conn
	KV *bus.Buckets
}

// New runs a single embedded server with the buckets.
func New(t testing.TB) *Region {
	t.Helper()
	return On(t, bustest.RunServer(t).ClientURL())
}

// On makes a region on the servers at url (a cluster's URLs, say).
func On(t testing.TB, url string) *Region {
	t.Helper()
	nc := bustest.Connect(t, url)
	return &Region{T: t, URL: url, NC: nc, KV: bustest.Buckets(t, nc)}
}

// Connect opens a connection of its own, closed when the test ends.
func (r *Region) Connect() *nats.Conn {
	r.T.Helper()
	return bustest.Connect(r.T, r.URL)
}

// Run runs f until stop is called or the test ends, and checks that it
// returns no error and stops within 15 s. stop is safe to call twice.
func (r *Region) Run(name string, f func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					r.T.Errorf("%s: %v", name, err)
				}
			case <-time.After(15 * time.Second):
				r.T.Errorf("%s did not stop within 15s", name)
			}
		})
	}
	r.T.Cleanup(stop)
	return stop
}

// StartNode runs a discovery node on its own connection until stop or the
// end of the test, and waits until it serves and its subjects answer from
// the test's own connection (on a cluster, interest takes a moment to
// reach the other servers).
func (r *Region) StartNode(cfg discovery.Config) (n *discovery.Node, stop func()) {
	r.T.Helper()
	nc, err := nats.Connect(r.URL)
	if err != nil {
		r.T.Fatal(err)
	}
	kv, err := bus.EnsureBuckets(r.T.Context(), nc, bus.BucketOptions{Subjects: cfg.Subjects})
	if err != nil {
		r.T.Fatal(err)
	}
	n, err = discovery.New(nc, kv, cfg)
	if err != nil {
		r.T.Fatal(err)
	}
	served := make(chan struct{})
	runStop := r.Run("discovery node", func(ctx context.Context) error {
		err := n.Run(ctx)
		close(served)
		return err
	})
	stop = func() {
		runStop()
		nc.Close()
	}
	r.T.Cleanup(stop)
	select {
	case <-n.Serving():
	case <-served:
		r.T.Fatal("discovery node stopped before serving")
	case <-time.After(10 * time.Second):
		r.T.Fatal("discovery node not serving within 10s")
	}
	r.answered(cfg.Subjects.DiscoveryServices())
	return n, stop
}

// answered waits until a request on subject gets an answer from the
// test's connection.
func (r *Region) answered(subject string) {
	r.T.Helper()
	bustest.Eventually(r.T, 10*time.Second, func() error {
		_, err := r.NC.Request(subject, []byte("{}"), time.Second)
		return err
	})
}

// StartRouter runs a router on its own connection until the test ends and
// waits until it is ready.
func (r *Region) StartRouter(cfg router.Config) *router.Router {
	r.T.Helper()
	rt, err := router.New(r.Connect(), cfg)
	if err != nil {
		r.T.Fatal(err)
	}
	r.Run("router", rt.Run)
	bustest.Eventually(r.T, 10*time.Second, func() error {
		if !rt.Ready() {
			return errors.New("router not ready")
		}
		return nil
	})
	return rt
}

// StartConsole serves the console (and the probes and metrics of set)
// over HTTP until the test ends, once it has read the buckets. Its live
// streams end before the HTTP server closes.
func (r *Region) StartConsole(cfg console.RegionConfig) (*console.Region, *httptest.Server) {
	r.T.Helper()
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	region := console.NewRegion(r.Connect(), r.KV, cfg)
	srv := httptest.NewServer(admin.Handler(cfg.Metrics, func() bool { return true }, region.Handler(console.Guard{}), false))
	r.T.Cleanup(srv.Close)
	r.Run("console", region.Run) // its cleanup runs before srv.Close
	select {
	case <-region.Ready():
	case <-time.After(10 * time.Second):
		r.T.Fatal("console not ready within 10s")
	}
	return region, srv
}

// Record reads key from hail_instances.
func (r *Region) Record(key string) (events.InstanceRecord, error) {
	e, err := r.KV.Instances.Get(r.T.Context(), key)
	if err != nil {
		return events.InstanceRecord{}, err
	}
	return events.DecodeInstanceRecord(e.Value())
}

// Instances lists the records in hail_instances, by id.
func (r *Region) Instances() map[string]events.InstanceRecord {
	r.T.Helper()
	ctx := r.T.Context()
	keys, err := r.KV.Instances.ListKeys(ctx)
	if err != nil {
		r.T.Fatal(err)
	}
	out := map[string]events.InstanceRecord{}
	for k := range keys.Keys() {
		rec, err := r.Record(k)
		if err != nil {
			r.T.Fatal(err)
		}
		out[rec.ID] = rec
	}
	return out
}

// Route returns hail_config route.<service> as stored, if any.
func (r *Region) Route(service string) (string, bool) {
	r.T.Helper()
	entry, err := r.KV.Config.Get(r.T.Context(), events.RouteConfigKey(service))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", false
	}
	if err != nil {
		r.T.Fatal(err)
	}
	return string(entry.Value()), true
}

// Request sends v (JSON unless it is []byte) to subject from the test's
// connection and fails the test on no answer.
func (r *Region) Request(subject string, v any) *nats.Msg {
	r.T.Helper()
	data, ok := v.([]byte)
	if !ok {
		var err error
		if data, err = json.Marshal(v); err != nil {
			r.T.Fatal(err)
		}
	}
	m, err := r.NC.Request(subject, data, 2*time.Second)
	if err != nil {
		r.T.Fatalf("request %s: %v", subject, err)
	}
	return m
}

// Console is a region with one discovery node (heartbeats every 200 ms)
// and the console served over HTTP: what the console's tests, in the
// browser too, run against.
type Console struct {
	*Region
	Set *metrics.Set
	Srv *httptest.Server
}

// NewConsole starts it on a single embedded server.
func NewConsole(t testing.TB) *Console {
	t.Helper()
	c := &Console{Region: New(t), Set: metrics.NewSet()}
	c.StartNode(discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 200 * time.Millisecond, Timeout: 100 * time.Millisecond},
		// Instances registered a moment ago count for self-preservation,
		// so that a test can show a node in it.
		SelfPreservation: discovery.SelfPreservation{SteadyAfter: time.Millisecond}}})
	_, c.Srv = c.StartConsole(console.RegionConfig{Metrics: c.Set})
	return c
}

// Do sends an HTTP request to the console, a write as JSON as the page
// sends it (the console's guard refuses any other), and returns the
// status and body.
func (c *Console) Do(method, path, body string) (int, string) {
	c.T.Helper()
	req, err := http.NewRequest(method, c.Srv.URL+path, strings.NewReader(body))
	if err != nil {
		c.T.Fatal(err)
	}
	if method != http.MethodGet && method != http.MethodHead {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.T.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// GetJSON gets path, which must answer 200, into v.
func (c *Console) GetJSON(path string, v any) {
	c.T.Helper()
	code, body := c.Do(http.MethodGet, path, "")
	if code != http.StatusOK {
		c.T.Fatalf("GET %s: %d %s", path, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		c.T.Fatalf("GET %s: %v: %s", path, err, body)
	}
}
