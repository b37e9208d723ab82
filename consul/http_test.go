package consul_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/consul"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/consulenv"
	"github.com/hailsd/hail/roles"
)

// get fetches base+path and returns the status, body and X-Consul-Index.
func get(t *testing.T, base, path string, hdr ...string) (int, string, uint64) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	idx, _ := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
	return resp.StatusCode, string(body), idx
}

func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	return v
}

// The catalog and health answers carry the contract's fields, filtered by
// ?tag= and ?passing.
func TestCatalogAndHealthAnswers(t *testing.T) {
	e := consulenv.Start(t, consulenv.Options{})
	a := e.Record("web", func(r *events.InstanceRecord) {
		r.Hostname, r.Version, r.AZ, r.Weight = "host-a", "1.2.3", "az1", 7
		r.Tags = []string{"v2", "primary"}
		r.Metadata = map[string]string{"team": "blue"}
		r.Checks = []events.CheckResult{{Name: "http", Kind: events.CheckHTTP, Status: events.Passing, Output: "200 OK"}}
	})
	b := e.Record("web", func(r *events.InstanceRecord) {
		r.Tags = []string{"v2"}
		r.Status = events.Critical
		r.Checks = []events.CheckResult{{Name: "http", Kind: events.CheckHTTP, Status: events.Critical, Output: "refused"}}
	})
	c := e.Record("api", func(r *events.InstanceRecord) { r.Status = events.Critical }) // its heartbeat failed
	for _, r := range []events.InstanceRecord{a, b, c} {
		e.Put(r)
	}

	code, body, idx := get(t, e.HTTP, "/v1/catalog/services")
	if code != 200 || idx == 0 {
		t.Fatalf("services: %d %s index %d", code, body, idx)
	}
	svcs := decode[map[string][]string](t, body)
	if got := fmt.Sprint(svcs); got != "map[api:[] web:[primary v2]]" {
		t.Errorf("services = %s", got)
	}

	_, body, _ = get(t, e.HTTP, "/v1/catalog/service/web?tag=primary")
	cat := decode[[]map[string]any](t, body)
	if len(cat) != 1 {
		t.Fatalf("catalog ?tag=primary: %s", body)
	}
	want := map[string]any{
		"Node": "host-a", "Address": a.Address, "Datacenter": consulenv.Datacenter, "ServiceID": a.ID, "ServiceName": "web",
		"ServiceAddress": a.Address, "ServicePort": 8080.0,
		"ServiceMeta":    map[string]any{"team": "blue", "hail_version": "1.2.3", "hail_az": "az1", "hail_weight": "7"},
		"ServiceWeights": map[string]any{"Passing": 7.0, "Warning": 1.0},
		"ServiceTags":    []any{"v2", "primary"},
	}
	for k, v := range want {
		if fmt.Sprint(cat[0][k]) != fmt.Sprint(v) {
			t.Errorf("catalog %s = %v, want %v", k, cat[0][k], v)
		}
	}
	if _, body, _ = get(t, e.HTTP, "/v1/catalog/service/web?tag=V2"); len(decode[[]any](t, body)) != 2 {
		t.Errorf("?tag=V2 (tags compare without case): %s", body)
	}

	type check struct{ CheckID, Name, Status, Output, ServiceID, ServiceName, Type string }
	type entry struct {
		Node    struct{ Node, Datacenter string }
		Service struct{ ID, Service string }
		Checks  []check
	}
	_, body, _ = get(t, e.HTTP, "/v1/health/service/web")
	entries := decode[[]entry](t, body)
	if len(entries) != 2 {
		t.Fatalf("health: %s", body)
	}
	checksOf := map[string][]check{}
	for _, en := range entries {
		checksOf[en.Service.ID] = en.Checks
	}
	wantA := []check{
		{CheckID: "hail", Name: "hail", Status: "passing", Output: "hail heartbeat", ServiceID: a.ID, ServiceName: "web"},
		{CheckID: "service:" + a.ID + ":http", Name: "http", Status: "passing", Output: "200 OK", ServiceID: a.ID, ServiceName: "web", Type: "http"},
	}
	if fmt.Sprint(checksOf[a.ID]) != fmt.Sprint(wantA) {
		t.Errorf("checks of a = %+v\nwant %+v", checksOf[a.ID], wantA)
	}
	if got := checksOf[b.ID]; len(got) != 2 || got[0].Status != "passing" || got[1].Status != "critical" {
		t.Errorf("checks of b (its check failed, its heartbeat answers) = %+v", got)
	}
	_, body, _ = get(t, e.HTTP, "/v1/health/service/web?passing")
	if got := decode[[]entry](t, body); len(got) != 1 || got[0].Service.ID != a.ID {
		t.Errorf("?passing: %s", body)
	}
	_, body, _ = get(t, e.HTTP, "/v1/health/service/api")
	if got := decode[[]entry](t, body); len(got) != 1 || got[0].Checks[0].Status != "critical" {
		t.Errorf("api (heartbeat lost): %s", body)
	}
	_, body, _ = get(t, e.HTTP, "/v1/health/checks/web")
	if got := decode[[]check](t, body); len(got) != 4 {
		t.Errorf("health/checks: %s", body)
	}

	_, body, _ = get(t, e.HTTP, "/v1/agent/self")
	self := decode[map[string]map[string]any](t, body)
	if self["Config"]["Datacenter"] != consulenv.Datacenter || self["Config"]["Version"] != events.Version {
		t.Errorf("agent/self: %s", body)
	}
	if _, body, _ = get(t, e.HTTP, "/v1/status/leader"); decode[string](t, body) == "" {
		t.Errorf("status/leader: %s", body)
	}
}

// Paths and names that are not served are 404 with a message, bad
// queries 400, another datacenter 500 as Consul answers it: never a 500
// for a client's mistake.
func TestBadInput(t *testing.T) {
	e := consulenv.Start(t, consulenv.Options{})
	e.Put(e.Record("web", nil))
	for _, tc := range []struct {
		method, path string
		code         int
		says         string
	}{
		{"GET", "/v1/catalog/service/nope", 404, `no service "nope"`},
		{"GET", "/v1/health/service/nope", 404, `no service "nope"`},
		{"GET", "/v1/health/checks/nope", 404, `no service "nope"`},
		{"GET", "/v1/health/service/" + strings.Repeat("x", 5000), 404, "no service"},
		{"GET", "/v1/health/service/web%00", 404, "no service"},
		{"GET", "/v1/kv/config", 404, "key/value store"},
		{"GET", "/v1/session/list", 404, "sessions"},
		{"GET", "/v1/acl/tokens", 404, "ACL management"},
		{"GET", "/v1/connect/ca/roots", 404, "Connect"},
		{"GET", "/v1/nothing", 404, "no such path"},
		{"GET", "/", 404, "no such path"},
		{"GET", "/v1/health/service/web?wait=soon&index=1", 400, "invalid wait time"},
		{"GET", "/v1/health/service/web?wait=-1s&index=1", 400, "negative"},
		{"GET", "/v1/health/service/web?index=x", 400, "index"},
		{"GET", "/v1/health/service/web?passing=maybe", 400, "passing"},
		{"GET", "/v1/health/service/web?token=secret", 400, "X-Consul-Token"},
		{"GET", "/v1/health/service/web?filter=Service.Port%3D%3D1", 400, "filter"},
		{"GET", "/v1/health/service/web?%zz", 400, "bad query"},
		{"GET", "/v1/health/service/web?dc=elsewhere", 500, "No path to datacenter"},
		{"DELETE", "/v1/catalog/services", 405, "GET"},
	} {
		t.Run(tc.method+" "+truncated(tc.path), func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), tc.method, e.HTTP+tc.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code || !strings.Contains(string(body), tc.says) {
				t.Errorf("%d %q, want %d saying %q", resp.StatusCode, body, tc.code, tc.says)
			}
		})
	}
	for _, path := range []string{"/v1/health/service/web?dc=" + consulenv.Datacenter + "&stale", "/v1/catalog/service/web?consistent", "/v1/health/service/web?wait=1s"} {
		if code, body, _ := get(t, e.HTTP, path); code != 200 {
			t.Errorf("%s: %d %s", path, code, body)
		}
	}
}

func truncated(s string) string {
	if len(s) > 60 {
		return s[:60]
	}
	return s
}

// A blocking query wakes when its own service's answer changes, never for
// another service; an index of 0 or behind answers at once.
func TestBlockingQueryWakesOnlyForItsService(t *testing.T) {
	e := consulenv.Start(t, consulenv.Options{})
	web, api := e.Record("web", nil), e.Record("api", nil)
	e.Put(web)
	e.Put(api)
	_, _, webIdx := get(t, e.HTTP, "/v1/health/service/web")
	_, _, apiIdx := get(t, e.HTTP, "/v1/health/service/api")

	if code, _, idx := get(t, e.HTTP, "/v1/health/service/web?index=0&wait=10m"); code != 200 || idx != webIdx {
		t.Fatalf("index 0: %d index %d", code, idx)
	}
	if code, _, idx := get(t, e.HTTP, fmt.Sprintf("/v1/health/service/web?index=%d&wait=10m", webIdx-1)); code != 200 || idx != webIdx {
		t.Fatalf("index behind: %d index %d", code, idx)
	}

	type result struct {
		idx  uint64
		body string
	}
	block := func(path string) chan result {
		ch := make(chan result, 1)
		go func() {
			_, body, idx := get(t, e.HTTP, path)
			ch <- result{idx, body}
		}()
		return ch
	}
	webCh := block(fmt.Sprintf("/v1/health/service/web?index=%d&wait=5m", webIdx))
	apiCh := block(fmt.Sprintf("/v1/health/service/api?index=%d&wait=5m", apiIdx))
	blocked := e.Set.GetOrCreateGauge("hail_consul_blocking_queries", nil)
	bustest.Eventually(t, 10*time.Second, func() error {
		if n := blocked.Get(); n != 2 {
			return fmt.Errorf("%v queries blocked, want 2", n)
		}
		return nil
	})

	web.Status = events.Critical
	rev := e.Put(web)
	select {
	case r := <-webCh:
		if r.idx != rev || !strings.Contains(r.body, `"Status":"critical"`) {
			t.Errorf("woken web query: index %d (want %d) %s", r.idx, rev, r.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("web's blocking query was not woken by web's change")
	}
	select {
	case r := <-apiCh:
		t.Fatalf("api's blocking query woke for web's change: index %d", r.idx)
	default:
	}
	if n := blocked.Get(); n != 1 {
		t.Errorf("%v queries blocked after web's change, want api's alone", n)
	}
	e.Delete(api)
	select {
	case r := <-apiCh:
		if r.body != "[]" || r.idx <= apiIdx {
			t.Errorf("api's query after its last instance left: index %d %s", r.idx, r.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("api's blocking query was not woken by api's delete")
	}
	if code, _, _ := get(t, e.HTTP, "/v1/health/service/api"); code != 404 {
		t.Errorf("a service with no instances left: %d, want 404", code)
	}
}

// A health change moves the health index, not the catalog's: a blocked
// catalog query sleeps on.
func TestCatalogIndexIgnoresHealth(t *testing.T) {
	e := consulenv.Start(t, consulenv.Options{})
	web := e.Record("web", nil)
	e.Put(web)
	_, _, catIdx := get(t, e.HTTP, "/v1/catalog/service/web")
	_, _, listIdx := get(t, e.HTTP, "/v1/catalog/services")
	web.Status = events.Critical
	rev := e.Put(web)
	if _, _, idx := get(t, e.HTTP, "/v1/health/service/web"); idx != rev {
		t.Errorf("health index %d, want %d", idx, rev)
	}
	if _, _, idx := get(t, e.HTTP, "/v1/catalog/service/web"); idx != catIdx {
		t.Errorf("catalog index moved to %d on a health change (was %d)", idx, catIdx)
	}
	if _, _, idx := get(t, e.HTTP, "/v1/catalog/services"); idx != listIdx {
		t.Errorf("services index moved to %d on a health change (was %d)", idx, listIdx)
	}
}

// More blocking queries than http.max_blocking: the excess is refused
// with 429 at once, and a read that does not block still answers.
func TestMaxBlocking(t *testing.T) {
	const maxBlocking, clients = 100, 10000
	e := consulenv.Start(t, consulenv.Options{HTTP: consul.HTTPOptions{MaxBlocking: maxBlocking}})
	e.Put(e.Record("web", nil))
	_, _, idx := get(t, e.HTTP, "/v1/health/service/web")
	// The handler itself, without sockets: 10,000 connections would test
	// the machine's file limit, not the bound.
	h := consul.Handler(e.View, consul.HTTPOptions{MaxBlocking: maxBlocking})
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var refused, answered atomic.Int64
	// At most 1,000 goroutines alive besides the blocked ones: the race
	// detector allows 8,128.
	alive := make(chan struct{}, 1000)
	for range clients {
		alive <- struct{}{}
		wg.Go(func() {
			req := httptest.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("/v1/health/service/web?index=%d&wait=10m", idx), nil)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code == http.StatusTooManyRequests {
				refused.Add(1)
				<-alive
				return
			}
			answered.Add(1)
		})
	}
	bustest.Eventually(t, 30*time.Second, func() error {
		if got := refused.Load(); got != clients-maxBlocking {
			return fmt.Errorf("%d refused, want %d", got, clients-maxBlocking)
		}
		return nil
	})
	if got := answered.Load(); got != 0 {
		t.Errorf("%d blocking queries answered before any change", got)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/health/service/web", nil))
	if rec.Code != 200 {
		t.Errorf("a read that does not block, with the bound reached: %d", rec.Code)
	}
	cancel()
	wg.Wait()
}

// With http.tokens_file, reads need a read token, in X-Consul-Token or as
// a bearer token; ?token= is refused even when valid.
func TestTokens(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	text := "read " + roles.HashToken("r-token") + "\nwrite " + roles.HashToken("w-token") + "\n"
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := roles.LoadTokens(file)
	if err != nil {
		t.Fatal(err)
	}
	e := consulenv.Start(t, consulenv.Options{HTTP: consul.HTTPOptions{Tokens: tokens}})
	e.Put(e.Record("web", nil))
	for _, tc := range []struct {
		name string
		path string
		hdr  []string
		code int
	}{
		{"none", "/v1/catalog/services", nil, 403},
		{"wrong", "/v1/catalog/services", []string{"X-Consul-Token", "nope"}, 403},
		{"read header", "/v1/catalog/services", []string{"X-Consul-Token", "r-token"}, 200},
		{"write bearer", "/v1/health/service/web", []string{"Authorization", "Bearer w-token"}, 200},
		{"in the URL", "/v1/catalog/services?token=r-token", nil, 400},
	} {
		if code, body, _ := get(t, e.HTTP, tc.path, tc.hdr...); code != tc.code {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.code)
		}
	}
}

// 1,000 blocking queries on 1,000 services, one change: exactly one
// returns, the one on the changed service.
func TestOneChangeWakesOneOf1000(t *testing.T) {
	const n = 1000
	e := consulenv.Start(t, consulenv.Options{})
	recs := make([]events.InstanceRecord, n)
	for i := range recs {
		recs[i] = e.Record(fmt.Sprintf("svc-%d", i), nil)
	}
	e.PutAll(recs)
	set := metrics.NewSet()
	h := consul.Handler(e.View, consul.HTTPOptions{Metrics: set})
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	returned := make(chan string, n)
	for i := range n {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, fmt.Sprintf("/v1/health/service/svc-%d", i), nil))
		idx := rec.Header().Get("X-Consul-Index")
		wg.Go(func() {
			req := httptest.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("/v1/health/service/svc-%d?index=%s&wait=10m", i, idx), nil)
			h.ServeHTTP(httptest.NewRecorder(), req)
			if ctx.Err() == nil {
				returned <- req.URL.Path
			}
		})
	}
	blocked := set.GetOrCreateGauge("hail_consul_blocking_queries", nil)
	bustest.Eventually(t, 30*time.Second, func() error {
		if got := blocked.Get(); got != n {
			return fmt.Errorf("%v blocked, want %d", got, n)
		}
		return nil
	})
	changed := recs[417]
	changed.Status = events.Critical
	e.Put(changed)
	select {
	case path := <-returned:
		if path != "/v1/health/service/svc-417" {
			t.Fatalf("%s returned for a change of svc-417", path)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no query returned")
	}
	bustest.Eventually(t, 10*time.Second, func() error {
		if got := blocked.Get(); got != n-1 {
			return fmt.Errorf("%v blocked, want %d", got, n-1)
		}
		return nil
	})
	if len(returned) != 0 {
		t.Errorf("%d more queries returned", len(returned))
	}
}

// The hail check is Consul's serfHealth: passing or critical, never
// warning, whatever the record's status and checks say.
func TestHailCheckPassingOrCritical(t *testing.T) {
	e := consulenv.Start(t, consulenv.Options{})
	warnCheck := []events.CheckResult{{Name: "http", Kind: events.CheckHTTP, Status: events.Warning, Output: "slow"}}
	critCheck := []events.CheckResult{{Name: "http", Kind: events.CheckHTTP, Status: events.Critical, Output: "refused"}}
	for _, tc := range []struct {
		name   string
		status events.Status
		checks []events.CheckResult
		want   string
	}{
		{"passing", events.Passing, nil, "passing"},
		{"warning reported by heartbeat", events.Warning, nil, "passing"},
		{"warning from a check", events.Warning, warnCheck, "passing"},
		{"critical heartbeat", events.Critical, nil, "critical"},
		{"critical from a check", events.Critical, critCheck, "passing"},
		{"critical heartbeat, warning check", events.Critical, warnCheck, "critical"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := "svc-" + strings.ReplaceAll(tc.name, " ", "-")
			svc = strings.ReplaceAll(svc, ",", "")
			e.Put(e.Record(svc, func(r *events.InstanceRecord) { r.Status, r.Checks = tc.status, tc.checks }))
			_, body, _ := get(t, e.HTTP, "/v1/health/service/"+svc)
			entries := decode[[]struct {
				Checks []struct{ CheckID, Status string }
			}](t, body)
			if len(entries) != 1 || len(entries[0].Checks) == 0 || entries[0].Checks[0].CheckID != consul.HailCheck {
				t.Fatalf("answer: %s", body)
			}
			if got := entries[0].Checks[0].Status; got != tc.want {
				t.Errorf("hail check %s, want %s", got, tc.want)
			}
		})
	}
}
