package console_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/admin"
	"github.com/hailsd/hail/console"
	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
)

// env is a real region on an embedded server: a discovery node with quick
// heartbeats, the admin page's region view and its HTTP server.
type env struct {
	t   *testing.T
	url string
	kv  *bus.Buckets
	set *metrics.Set
	srv *httptest.Server
}

func newEnv(t *testing.T) *env {
	t.Helper()
	s := bustest.RunServer(t)
	nc := bustest.Connect(t, s.ClientURL())
	kv := bustest.Buckets(t, nc)
	e := &env{t: t, url: s.ClientURL(), kv: kv, set: metrics.NewSet()}
	ctx, cancel := context.WithCancel(context.Background())
	node, err := discovery.New(bustest.Connect(t, s.ClientURL()), kv, discovery.Config{
		Timing: discovery.Timing{HeartbeatInterval: 200 * time.Millisecond, HeartbeatTimeout: 100 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- node.Run(ctx) }()
	region := console.NewRegion(nc, kv, console.RegionConfig{Metrics: e.set})
	regionDone := make(chan error, 1)
	go func() { regionDone <- region.Run(ctx) }()
	e.srv = httptest.NewServer(admin.Handler(e.set, func() bool { return true }, region.Handler()))
	t.Cleanup(e.srv.Close)
	t.Cleanup(func() { // before the server closes: live streams end with the region
		cancel()
		for _, ch := range []chan error{nodeDone, regionDone} {
			if err := <-ch; err != nil {
				t.Errorf("stopped with %v", err)
			}
		}
	})
	<-node.Serving()
	<-region.Ready()
	return e
}

func (e *env) do(method, path, body string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e *env) getJSON(path string, v any) {
	e.t.Helper()
	code, body := e.do(http.MethodGet, path, "")
	if code != http.StatusOK {
		e.t.Fatalf("GET %s: %d %s", path, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		e.t.Fatalf("GET %s: %v: %s", path, err, body)
	}
}

// instances lists the records in hail_instances.
func (e *env) instances() map[string]events.InstanceRecord {
	e.t.Helper()
	ctx := e.t.Context()
	keys, err := e.kv.Instances.ListKeys(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]events.InstanceRecord{}
	for k := range keys.Keys() {
		entry, err := e.kv.Instances.Get(ctx, k)
		if err != nil {
			e.t.Fatal(err)
		}
		rec, err := events.DecodeInstanceRecord(entry.Value())
		if err != nil {
			e.t.Fatal(err)
		}
		out[rec.ID] = rec
	}
	return out
}

func (e *env) route(service string) (string, bool) {
	e.t.Helper()
	entry, err := e.kv.Config.Get(e.t.Context(), events.RouteConfigKey(service))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", false
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return string(entry.Value()), true
}

func TestAPIMatchesRegistry(t *testing.T) {
	e := newEnv(t)
	a := fakeinst.Start(t, e.url, fakeinst.Options{Service: "echo"})
	b := fakeinst.Start(t, e.url, fakeinst.Options{Service: "echo", Weight: 300})
	c := fakeinst.Start(t, e.url, fakeinst.Options{Service: "com.example.login"})
	b.Silence()

	// The page's view follows hail_instances: b goes critical there first.
	bustest.Eventually(t, 10*time.Second, func() error {
		if got := e.instances()[b.ID].Status; got != events.Critical {
			return fmt.Errorf("b is %s in hail_instances", got)
		}
		var views []console.InstanceView
		e.getJSON("/api/instances?service=echo", &views)
		for _, v := range views {
			if v.ID == b.ID && v.Status != events.Critical {
				return fmt.Errorf("api says b is %s", v.Status)
			}
		}
		return nil
	})
	var all []console.InstanceView
	e.getJSON("/api/instances", &all)
	kv := e.instances()
	if len(all) != len(kv) {
		t.Fatalf("api lists %d instances, hail_instances %d", len(all), len(kv))
	}
	for _, v := range all {
		rec := kv[v.ID]
		if v.Service != rec.Service || v.Status != rec.Status || v.Weight != rec.Weight || v.Node != rec.Node || v.Version != rec.Version {
			t.Errorf("api %+v differs from hail_instances %+v", v.InstanceRecord, rec)
		}
	}
	var echo []console.InstanceView
	e.getJSON("/api/instances?service=echo", &echo)
	ids := []string{}
	for _, v := range echo {
		ids = append(ids, v.ID)
	}
	if want := []string{a.ID, b.ID}; !sameSet(ids, want) {
		t.Errorf("echo instances %v, want %v", ids, want)
	}
	// RTTs come from the node that heartbeats a answering instance.
	bustest.Eventually(t, 5*time.Second, func() error {
		var vs []console.InstanceView
		e.getJSON("/api/instances?service=echo", &vs)
		for _, v := range vs {
			if v.ID == a.ID && v.RTTMS == nil {
				return errors.New("no RTT for a")
			}
		}
		return nil
	})

	var services []console.ServiceView
	e.getJSON("/api/services", &services)
	if len(services) != 2 || services[0].Service != "com.example.login" || services[1].Service != "echo" ||
		services[1].Passing != 1 || services[1].Critical != 1 {
		t.Errorf("services = %+v", services)
	}
	var nodes []events.NodeRecord
	e.getJSON("/api/nodes", &nodes)
	if len(nodes) != 1 || nodes[0].ID != kv[c.ID].Node {
		t.Errorf("nodes = %+v, want the one owning the instances", nodes)
	}

	// The page itself lists them, server-rendered.
	code, page := e.do(http.MethodGet, "/?service=echo", "")
	if code != http.StatusOK || !strings.Contains(page, a.ID) || !strings.Contains(page, `data-status="critical"`) {
		t.Errorf("page: %d, lacks an instance or its status:\n%s", code, page)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestSteeringWritesHailConfig(t *testing.T) {
	e := newEnv(t)
	a := fakeinst.Start(t, e.url, fakeinst.Options{Service: "echo"})
	bustest.Eventually(t, 5*time.Second, func() error {
		var vs []console.InstanceView
		e.getJSON("/api/instances?service=echo", &vs)
		if len(vs) != 1 {
			return fmt.Errorf("%d instances", len(vs))
		}
		return nil
	})

	code, body := e.do(http.MethodPut, "/api/routes/echo", `{"strategy":"hash","hash_header":"X-User"}`)
	if code != http.StatusOK {
		t.Fatalf("put route: %d %s", code, body)
	}
	if v, _ := e.route("echo"); v != `{"strategy":"hash","hash_header":"X-User"}` {
		t.Errorf("hail_config route.echo = %s", v)
	}
	code, body = e.do(http.MethodPost, "/api/instances/"+a.ID+"/drain", "")
	if code != http.StatusOK {
		t.Fatalf("drain: %d %s", code, body)
	}
	if v, _ := e.route("echo"); v != fmt.Sprintf(`{"strategy":"hash","hash_header":"X-User","weights":{%q:0}}`, a.ID) {
		t.Errorf("after drain route.echo = %s", v)
	}
	bustest.Eventually(t, 5*time.Second, func() error {
		var vs []console.InstanceView
		e.getJSON("/api/instances?service=echo", &vs)
		if !vs[0].Drained {
			return errors.New("instance not shown drained")
		}
		return nil
	})
	if code, body = e.do(http.MethodPost, "/api/instances/"+a.ID+"/undrain", ""); code != http.StatusOK {
		t.Fatalf("undrain: %d %s", code, body)
	}
	if v, _ := e.route("echo"); v != `{"strategy":"hash","hash_header":"X-User"}` {
		t.Errorf("after undrain route.echo = %s", v)
	}
	var routes []console.RouteView
	bustest.Eventually(t, 5*time.Second, func() error {
		e.getJSON("/api/routes", &routes)
		if len(routes) != 1 || routes[0].Key != "route.echo" || routes[0].Config.HashHeader != "X-User" {
			return fmt.Errorf("routes = %+v", routes)
		}
		return nil
	})
	if code, _ = e.do(http.MethodDelete, "/api/routes/echo", ""); code != http.StatusNoContent {
		t.Errorf("delete route: %d", code)
	}
	if _, ok := e.route("echo"); ok {
		t.Error("route.echo still in hail_config after delete")
	}

	// The timeline holds the registration.
	var evs []events.HealthEvent
	e.getJSON("/api/timeline?service=echo&id="+a.ID, &evs)
	if len(evs) == 0 || evs[0].Status != events.Passing || evs[0].Previous != "" {
		t.Errorf("timeline = %+v, want the registration first", evs)
	}
}

func TestBadInputRefusedNothingWritten(t *testing.T) {
	e := newEnv(t)
	if code, body := e.do(http.MethodPut, "/api/routes/keep", `{"strategy":"random"}`); code != http.StatusOK {
		t.Fatalf("put the good route: %d %s", code, body)
	}
	tests := []struct {
		name, method, path, body string
		code                     int
		says                     string
	}{
		{"unknown strategy", "PUT", "/api/routes/keep", `{"strategy":"fastest"}`, 400, `strategy \"fastest\" is not one of`},
		{"negative weight", "PUT", "/api/routes/keep", `{"weights":{"0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a6b":-1}}`, 400, "out of range"},
		{"weight for a non-id", "PUT", "/api/routes/keep", `{"weights":{"nope":5}}`, 400, "is not an instance id"},
		{"weight not a number", "PUT", "/api/routes/keep", `{"weights":{"0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a6b":"heavy"}}`, 400, "malformed JSON"},
		{"malformed JSON", "PUT", "/api/routes/keep", `{"strategy":`, 400, "malformed JSON"},
		{"empty body", "PUT", "/api/routes/keep", ``, 400, "empty"},
		{"oversized", "PUT", "/api/routes/keep", `{"hash_header":"` + strings.Repeat("x", 70_000) + `"}`, 400, "too large"},
		{"wildcard service", "PUT", "/api/routes/ec*o", `{"strategy":"hash"}`, 400, "service"},
		{"upper-case service", "PUT", "/api/routes/Echo", `{"strategy":"hash"}`, 400, "service"},
		{"drain a non-id", "POST", "/api/instances/nope/drain", ``, 400, "UUID"},
		{"drain an unknown id", "POST", "/api/instances/0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a6b/drain", ``, 404, "no instance"},
		{"instances of a bad name", "GET", "/api/instances?service=a..b", ``, 400, "service"},
		{"timeline of a non-id", "GET", "/api/timeline?service=echo&id=x", ``, 400, "UUID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := e.do(tt.method, tt.path, tt.body)
			if code != tt.code || !strings.Contains(body, tt.says) {
				t.Errorf("%s %s: %d %s, want %d saying %q", tt.method, tt.path, code, body, tt.code, tt.says)
			}
			var msg struct {
				Error string `json:"error"`
			}
			if json.Unmarshal([]byte(body), &msg) != nil || msg.Error == "" {
				t.Errorf("answer is not {\"error\":...}: %s", body)
			}
		})
	}
	if v, _ := e.route("keep"); v != `{"strategy":"random"}` {
		t.Errorf("route.keep = %s after refused writes, want the good one kept", v)
	}
	keys, err := e.kv.Config.ListKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for k := range keys.Keys() {
		got = append(got, k)
	}
	if !slices.Equal(got, []string{"route.keep"}) {
		t.Errorf("hail_config holds %v, want only route.keep", got)
	}
	if n := e.set.GetOrCreateCounter(`hail_admin_writes_total{outcome="refused"}`).Get(); n < 9 {
		t.Errorf("refused writes counted %d, want at least 9", n)
	}
}

func TestEventStreamTellsChanges(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.srv.URL+"/api/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	lines := bufio.NewScanner(resp.Body)
	// The stream is open once its first line arrives; a registration now
	// must be told.
	if !lines.Scan() {
		t.Fatal("stream closed at once")
	}
	fakeinst.Start(t, e.url, fakeinst.Options{Service: "echo"})
	for lines.Scan() {
		if lines.Text() == "data: instance" {
			return
		}
	}
	t.Fatalf("no instance change told: %v", lines.Err())
}

// A node that blames itself (most of its instances silent at once) shows
// in self-preservation, live and, on a page started later, from the
// HAIL_EVENTS stream.
func TestNodeSelfPreservationShown(t *testing.T) {
	e := newEnv(t)
	var insts []*fakeinst.Instance
	for range 6 {
		insts = append(insts, fakeinst.Start(t, e.url, fakeinst.Options{Service: "echo"}))
	}
	for _, in := range insts {
		in.Silence()
	}
	state := func(nodes []console.NodeView) error {
		if len(nodes) != 1 || nodes[0].State != events.NodeSelfPreservation || nodes[0].Reason == "" {
			return fmt.Errorf("nodes = %+v", nodes)
		}
		return nil
	}
	bustest.Eventually(t, 10*time.Second, func() error {
		var nodes []console.NodeView
		e.getJSON("/api/nodes", &nodes)
		return state(nodes)
	})
	later := console.NewRegion(bustest.Connect(t, e.url), e.kv, console.RegionConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- later.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	<-later.Ready()
	bustest.Eventually(t, 5*time.Second, func() error { return state(later.Nodes()) })
}
