package console_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/console"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/internal/regiontest"
	"github.com/hailsd/hail/router"
)

// newEnv is a real region on an embedded server: a discovery node with
// quick heartbeats and the console over HTTP.
func newEnv(t *testing.T) *regiontest.Console { return regiontest.NewConsole(t) }

func TestAPIMatchesRegistry(t *testing.T) {
	e := newEnv(t)
	a := fakeinst.Start(t, e.URL, fakeinst.Options{Service: "echo"})
	b := fakeinst.Start(t, e.URL, fakeinst.Options{Service: "echo", Weight: 300})
	c := fakeinst.Start(t, e.URL, fakeinst.Options{Service: "com.example.login"})
	b.Silence()

	// The page's view follows hail_instances: b goes critical there first.
	bustest.Eventually(t, 10*time.Second, func() error {
		if got := e.Instances()[b.ID].Status; got != events.Critical {
			return fmt.Errorf("b is %s in hail_instances", got)
		}
		var views []console.InstanceView
		e.GetJSON("/api/instances?service=echo", &views)
		for _, v := range views {
			if v.ID == b.ID && v.Status != events.Critical {
				return fmt.Errorf("api says b is %s", v.Status)
			}
		}
		return nil
	})
	var all []console.InstanceView
	e.GetJSON("/api/instances", &all)
	kv := e.Instances()
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
	e.GetJSON("/api/instances?service=echo", &echo)
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
		e.GetJSON("/api/instances?service=echo", &vs)
		for _, v := range vs {
			if v.ID == a.ID && v.RTTMS == nil {
				return errors.New("no RTT for a")
			}
		}
		return nil
	})

	var services []console.ServiceView
	e.GetJSON("/api/services", &services)
	if len(services) != 2 || services[0].Service != "com.example.login" || services[1].Service != "echo" ||
		services[1].Passing != 1 || services[1].Critical != 1 {
		t.Errorf("services = %+v", services)
	}
	var nodes []events.NodeRecord
	e.GetJSON("/api/nodes", &nodes)
	if len(nodes) != 1 || nodes[0].ID != kv[c.ID].Node {
		t.Errorf("nodes = %+v, want the one owning the instances", nodes)
	}

	// The page itself lists them, server-rendered.
	code, page := e.Do(http.MethodGet, "/?service=echo", "")
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
	a := fakeinst.Start(t, e.URL, fakeinst.Options{Service: "echo"})
	bustest.Eventually(t, 5*time.Second, func() error {
		var vs []console.InstanceView
		e.GetJSON("/api/instances?service=echo", &vs)
		if len(vs) != 1 {
			return fmt.Errorf("%d instances", len(vs))
		}
		return nil
	})

	code, body := e.Do(http.MethodPut, "/api/routes/echo", `{"strategy":"hash","hash_header":"X-User"}`)
	if code != http.StatusOK {
		t.Fatalf("put route: %d %s", code, body)
	}
	if strings.Contains(body, "warning") {
		t.Errorf("a route for a registered service answered with a warning: %s", body)
	}
	if v, _ := e.Route("echo"); v != `{"strategy":"hash","hash_header":"X-User"}` {
		t.Errorf("hail_config route.echo = %s", v)
	}
	code, body = e.Do(http.MethodPost, "/api/instances/"+a.ID+"/drain", "")
	if code != http.StatusOK {
		t.Fatalf("drain: %d %s", code, body)
	}
	if v, _ := e.Route("echo"); v != fmt.Sprintf(`{"strategy":"hash","hash_header":"X-User","weights":{%q:0}}`, a.ID) {
		t.Errorf("after drain route.echo = %s", v)
	}
	bustest.Eventually(t, 5*time.Second, func() error {
		var vs []console.InstanceView
		e.GetJSON("/api/instances?service=echo", &vs)
		if !vs[0].Drained {
			return errors.New("instance not shown drained")
		}
		return nil
	})
	if code, body = e.Do(http.MethodPost, "/api/instances/"+a.ID+"/undrain", ""); code != http.StatusOK {
		t.Fatalf("undrain: %d %s", code, body)
	}
	if v, _ := e.Route("echo"); v != `{"strategy":"hash","hash_header":"X-User"}` {
		t.Errorf("after undrain route.echo = %s", v)
	}
	// A route for a service nobody registered is written, and says so.
	code, body = e.Do(http.MethodPut, "/api/routes/nosuch", `{"strategy":"random"}`)
	if code != http.StatusOK || !strings.Contains(body, `"warning":"no instance of service \"nosuch\" is registered`) {
		t.Errorf("put route for an unregistered service: %d %s", code, body)
	}
	if code, _ = e.Do(http.MethodDelete, "/api/routes/nosuch", ""); code != http.StatusNoContent {
		t.Errorf("delete route nosuch: %d", code)
	}
	var routes []console.RouteView
	bustest.Eventually(t, 5*time.Second, func() error {
		e.GetJSON("/api/routes", &routes)
		if len(routes) != 1 || routes[0].Key != "route.echo" || routes[0].Config.HashHeader != "X-User" {
			return fmt.Errorf("routes = %+v", routes)
		}
		return nil
	})
	if code, _ = e.Do(http.MethodDelete, "/api/routes/echo", ""); code != http.StatusNoContent {
		t.Errorf("delete route: %d", code)
	}
	if _, ok := e.Route("echo"); ok {
		t.Error("route.echo still in hail_config after delete")
	}
	// A route of nothing but a drain: undone, the route goes, not {}.
	if code, body = e.Do(http.MethodPost, "/api/instances/"+a.ID+"/drain", ""); code != http.StatusOK {
		t.Fatalf("drain: %d %s", code, body)
	}
	if code, body = e.Do(http.MethodPost, "/api/instances/"+a.ID+"/undrain", ""); code != http.StatusOK {
		t.Fatalf("undrain: %d %s", code, body)
	}
	if v, ok := e.Route("echo"); ok {
		t.Errorf("after undoing the only drain route.echo = %s, want no route", v)
	}

	// The timeline holds the registration.
	var evs []events.HealthEvent
	e.GetJSON("/api/timeline?service=echo&id="+a.ID, &evs)
	if len(evs) == 0 || evs[0].Status != events.Passing || evs[0].Previous != "" {
		t.Errorf("timeline = %+v, want the registration first", evs)
	}
}

func TestBadInputRefusedNothingWritten(t *testing.T) {
	e := newEnv(t)
	if code, body := e.Do(http.MethodPut, "/api/routes/keep", `{"strategy":"random"}`); code != http.StatusOK {
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
			code, body := e.Do(tt.method, tt.path, tt.body)
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
	if v, _ := e.Route("keep"); v != `{"strategy":"random"}` {
		t.Errorf("route.keep = %s after refused writes, want the good one kept", v)
	}
	keys, err := e.KV.Config.ListKeys(t.Context())
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
	if n := e.Set.GetOrCreateCounter(`hail_admin_writes_total{outcome="refused"}`).Get(); n < 9 {
		t.Errorf("refused writes counted %d, want at least 9", n)
	}
}

func TestEventStreamTellsChanges(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.Srv.URL+"/api/events", nil)
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
	fakeinst.Start(t, e.URL, fakeinst.Options{Service: "echo"})
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
		insts = append(insts, fakeinst.Start(t, e.URL, fakeinst.Options{Service: "echo"}))
	}
	// Only instances that have answered count for self-preservation: a
	// second heartbeat means the round of the first one was judged.
	bustest.Eventually(t, 10*time.Second, func() error {
		for _, in := range insts {
			if in.Beats() < 2 {
				return fmt.Errorf("an instance has had %d heartbeats", in.Beats())
			}
		}
		return nil
	})
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
		e.GetJSON("/api/nodes", &nodes)
		return state(nodes)
	})
	later := console.NewRegion(bustest.Connect(t, e.URL), e.KV, console.RegionConfig{})
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

// An instance registered with v1.1 fields shows its address:port, tags and
// each check with status and output on the page (read without JavaScript).
func TestPageShowsAddressTagsAndChecks(t *testing.T) {
	e := newEnv(t)
	checks := []events.CheckResult{{Name: "health", Kind: events.CheckHTTP, Status: events.Critical, Output: "GET /health: 503 Service Unavailable"}}
	f := fakeinst.Start(t, e.URL, fakeinst.Options{Service: "web", Edit: func(a *events.Announce) {
		a.Address, a.Port, a.Tags, a.Status, a.Checks = "10.0.0.7", 8080, []string{"primary"}, events.Critical, checks
	}})
	f.SetChecks(checks)
	bustest.Eventually(t, 5*time.Second, func() error {
		code, page := e.Do(http.MethodGet, "/?service=web", "")
		for _, want := range []string{"10.0.0.7:8080", `<span class="tag">primary</span>`, `<span class="badge critical">health</span>`, "GET /health: 503 Service Unavailable"} {
			if code != http.StatusOK || !strings.Contains(page, want) {
				return fmt.Errorf("page (%d) lacks %q", code, want)
			}
		}
		return nil
	})
}

// The golden metrics come from real traffic through a router: idle before
// any request, serving with requests per second, success and a sparkline
// while requests flow, stopped when they end.
func TestTrafficFromRouters(t *testing.T) {
	r := regiontest.New(t)
	r.StartNode(discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 200 * time.Millisecond, Timeout: 100 * time.Millisecond}}})
	r.StartRouter(router.Config{StatsInterval: 100 * time.Millisecond})
	fakeinst.Start(t, r.URL, fakeinst.Options{Service: "echo"})
	_, srv := r.StartConsole(console.RegionConfig{TrafficStep: 100 * time.Millisecond})
	e := &regiontest.Console{Region: r, Srv: srv}
	state := func(want string) console.ServiceView {
		var got console.ServiceView
		bustest.Eventually(t, 10*time.Second, func() error {
			var vs []console.ServiceView
			e.GetJSON("/api/services", &vs)
			if len(vs) != 1 || vs[0].Traffic.State != want {
				return fmt.Errorf("services %+v, want traffic %s", vs, want)
			}
			got = vs[0]
			return nil
		})
		return got
	}
	state(console.TrafficIdle)
	// A row has the keys the README's API table names.
	var rows []map[string]any
	e.GetJSON("/api/services", &rows)
	for _, k := range []string{"service", "instances", "passing", "drained", "traffic"} {
		if _, ok := rows[0][k]; !ok {
			t.Errorf("a row of /api/services lacks %q: %v", k, rows[0])
		}
	}
	traffic, _ := rows[0]["traffic"].(map[string]any)
	for _, k := range []string{"state", "rps", "success", "p50_ms", "p99_ms", "spark"} {
		if _, ok := traffic[k]; !ok {
			t.Errorf("traffic lacks %q: %v", k, traffic)
		}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, _ = r.NC.Request("hail.route.echo.say", []byte("hi"), time.Second)
		}
	}()
	v := state(console.TrafficServing)
	bustest.Eventually(t, 5*time.Second, func() error {
		var vs []console.ServiceView
		e.GetJSON("/api/services", &vs)
		v = vs[0]
		peak := 0.0
		for _, p := range v.Traffic.Spark {
			peak = max(peak, p)
		}
		if v.Traffic.RPS <= 0 || v.Traffic.Success != 1 || v.Traffic.P99MS <= 0 || peak <= 0 {
			return fmt.Errorf("traffic %+v", v.Traffic)
		}
		return nil
	})
	code, page := e.Do(http.MethodGet, "/?service=echo", "")
	if code != 200 || !strings.Contains(page, `<svg class="spark"`) || !strings.Contains(page, "<polyline") {
		t.Errorf("page (%d) lacks a drawn sparkline", code)
	}
	var insts []console.InstanceView
	e.GetJSON("/api/instances?service=echo", &insts)
	if len(insts) != 1 || insts[0].Traffic.RPS <= 0 {
		t.Errorf("instance traffic %+v", insts)
	}
	close(stop)
	<-done
	state(console.TrafficStopped)
}

// An instance that falls silent turns its strip red on the page.
func TestHealthStripTurnsRed(t *testing.T) {
	e := newEnv(t)
	f := fakeinst.Start(t, e.URL, fakeinst.Options{Service: "web"})
	bustest.Eventually(t, 5*time.Second, func() error {
		if _, page := e.Do(http.MethodGet, "/?service=web", ""); !strings.Contains(page, `data-status="passing"`) {
			return fmt.Errorf("no passing strip yet")
		}
		return nil
	})
	f.Silence()
	bustest.Eventually(t, 5*time.Second, func() error {
		var vs []console.InstanceView
		e.GetJSON("/api/instances?service=web", &vs)
		if len(vs) != 1 || len(vs[0].Health) == 0 || vs[0].Health[len(vs[0].Health)-1].Status != events.Critical {
			return fmt.Errorf("health %+v", vs)
		}
		if _, page := e.Do(http.MethodGet, "/?service=web", ""); !strings.Contains(page, `data-status="critical"`) {
			return fmt.Errorf("no red on the strip")
		}
		return nil
	})
}

// The page's first answer shows the first 30 services and a link to the
// rest; ?all shows every one (the page's script asks for it at once).
func TestPageFirstRowsThenAll(t *testing.T) {
	e := newEnv(t)
	conn := e.Connect()
	for i := range 32 {
		fakeinst.Start(t, e.URL, fakeinst.Options{Service: fmt.Sprintf("svc-%02d", i), Conn: conn})
	}
	bustest.Eventually(t, 10*time.Second, func() error {
		var vs []console.ServiceView
		e.GetJSON("/api/services", &vs)
		if len(vs) != 32 {
			return fmt.Errorf("%d services", len(vs))
		}
		return nil
	})
	for _, tc := range []struct {
		path string
		rows int
		more bool
	}{
		{"/", 30, true},
		{"/ui/main?service=svc-00", 30, true},
		{"/?all", 32, false},
		{"/ui/main?all&service=svc-31", 32, false},
	} {
		code, page := e.Do(http.MethodGet, tc.path, "")
		if code != 200 {
			t.Fatalf("%s: %d", tc.path, code)
		}
		services := page[strings.Index(page, `<table id="services">`):]
		services = services[:strings.Index(services, "</table>")]
		if n := strings.Count(services, `<tr data-service="`); n != tc.rows {
			t.Errorf("%s: %d service rows, want %d", tc.path, n, tc.rows)
		}
		if more := strings.Contains(services, "2 more services: show all"); more != tc.more {
			t.Errorf("%s: the show-all link is there: %v, want %v", tc.path, more, tc.more)
		}
	}
}

// Static files are named by their content's hash in the page, so the
// browser keeps them until they change; asked for without it, they are
// revalidated by ETag.
func TestStaticFilesCached(t *testing.T) {
	e := newEnv(t)
	_, page := e.Do(http.MethodGet, "/", "")
	i := strings.Index(page, `/static/app.js?v=`)
	if i < 0 {
		t.Fatalf("the page names app.js without its version:\n%s", page)
	}
	versioned := page[i : i+strings.IndexByte(page[i:], '"')]
	get := func(path string, h http.Header) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, e.Srv.URL+path, nil)
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := get(versioned, nil)
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
		t.Errorf("%s: %d, Cache-Control %q", versioned, resp.StatusCode, resp.Header.Get("Cache-Control"))
	}
	resp = get("/static/app.js", nil)
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-cache" || etag == "" {
		t.Errorf("/static/app.js: %d, Cache-Control %q, ETag %q", resp.StatusCode, resp.Header.Get("Cache-Control"), etag)
	}
	if resp = get("/static/app.js", http.Header{"If-None-Match": {etag}}); resp.StatusCode != http.StatusNotModified {
		t.Errorf("revalidated with its ETag: %d, want 304", resp.StatusCode)
	}
	if resp = get("/static/nothing.js", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown file: %d", resp.StatusCode)
	}
}
