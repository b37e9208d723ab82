package router_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/hailsd/hail/agent"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/internal/regiontest"
	"github.com/hailsd/hail/router"
)

// httpBackend is a real HTTP service that says who it is and echoes what
// it got; its /health can be made to fail.
type httpBackend struct {
	name    string
	srv     *httptest.Server
	failing atomic.Bool
}

func newHTTPBackend(t *testing.T, name string) *httpBackend {
	b := &httpBackend{name: name}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			if b.failing.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			return
		case "/missing":
			http.Error(w, "nothing here", http.StatusNotFound)
			return
		case "/broken":
			http.Error(w, "it broke", http.StatusInternalServerError)
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Backend", name)
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(map[string]string{"backend": name, "method": r.Method, "path": r.URL.EscapedPath(),
			"query": r.URL.RawQuery, "body": string(body), "x-user": r.Header.Get("X-User")})
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// behindAgent runs an agent that registers b as service "web", bridged
// and checked; it returns a function that kills the agent's connection
// (the agent dies without a word).
func behindAgent(t *testing.T, r *regiontest.Region, b *httpBackend) (kill func()) {
	host, portText, _ := net.SplitHostPort(b.srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portText)
	nc := r.Connect()
	a := agent.New(nc, agent.Config{HeartbeatInterval: 100 * time.Millisecond})
	svc := agent.ServiceConfig{Name: "web", Address: host, Port: port, Metadata: map[string]string{"backend": b.name},
		Bridge: agent.BridgeConfig{Endpoints: []agent.BridgeEndpoint{{Name: "http", Path: "*"}}},
		Checks: []agent.CheckConfig{{Name: "health", HTTP: b.srv.URL + "/health", Interval: 100 * time.Millisecond}}}
	r.Run("agent "+b.name, func(ctx context.Context) error { return a.Run(ctx, []agent.ServiceConfig{svc}) })
	return nc.Close
}

type ingressEnv struct {
	*regiontest.Region
	url string
}

func (e *ingressEnv) do(method, path string, hdr http.Header, body string) (int, http.Header, string) {
	e.T.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.T.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.T.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func (e *ingressEnv) backendOf(path string, hdr http.Header) string {
	e.T.Helper()
	code, h, _ := e.do(http.MethodGet, path, hdr, "")
	if code != http.StatusAccepted {
		return fmt.Sprintf("status %d", code)
	}
	return h.Get("X-Backend")
}

func TestIngress(t *testing.T) {
	r := regiontest.New(t)
	r.StartNode(discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond}}})
	route := router.DefaultRoute()
	route.Timeout = 2 * time.Second
	rt := r.StartRouter(router.Config{Table: router.TableConfig{Route: route}})
	srv := httptest.NewServer(rt.Ingress())
	defer srv.Close()
	e := &ingressEnv{Region: r, url: srv.URL}
	a, b := newHTTPBackend(t, "a"), newHTTPBackend(t, "b")
	behindAgent(t, r, a)
	behindAgent(t, r, b)
	fakeinst.Start(t, r.URL, fakeinst.Options{Service: "echo"})

	// Both backends answer under the default strategy.
	bustest.Eventually(t, 10*time.Second, func() error {
		seen := map[string]bool{}
		for range 30 {
			seen[e.backendOf("/web/http/who", nil)] = true
		}
		if !seen["a"] || !seen["b"] || len(seen) != 2 {
			return fmt.Errorf("answered by %v", seen)
		}
		return nil
	})

	// Method, path, query, headers and body arrive as sent; the status,
	// headers and body come back.
	code, h, body := e.do(http.MethodPut, "/web/http/items/a%2Fb?x=1&y=2", http.Header{"X-User": {"ann"}, "Nats-Service-Error-Code": {"500"}}, "payload")
	var got map[string]string
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("%d %q: %v", code, body, err)
	}
	if code != http.StatusAccepted || got["method"] != "PUT" || got["path"] != "/items/a%2Fb" || got["query"] != "x=1&y=2" ||
		got["body"] != "payload" || got["x-user"] != "ann" || h.Get("X-Backend") == "" || h.Get("Hail-Instance") == "" {
		t.Errorf("through the ingress: %d %v %v", code, got, h)
	}
	if h.Get("Hail-Status") != "" || h.Get("Nats-Service-Error-Code") != "" {
		t.Errorf("NATS-side headers reached the HTTP client: %v", h)
	}
	// The service's own 404 and 500 come back as such.
	for path, want := range map[string]int{"/web/http/missing": 404, "/web/http/broken": 500} {
		if code, _, body := e.do(http.MethodGet, path, nil, ""); code != want || !strings.Contains(body, "") {
			t.Errorf("%s: %d, want %d", path, code, want)
		}
	}
	// Routing errors as on NATS: unknown service or endpoint 404, bad name
	// 400, GET / 404, a body over the max payload 413.
	for _, tt := range []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/nosuch/http", "", 404},
		{"GET", "/web/nosuch", "", 404},
		{"GET", "/", "", 404},
		{"GET", "/Web!/http", "", 400},
		{"POST", "/web/http", strings.Repeat("x", 2<<20), 413},
	} {
		if code, _, _ := e.do(tt.method, tt.path, nil, tt.body); code != tt.want {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, code, tt.want)
		}
	}
	// The ingress reaches an SDK instance (here one speaking the protocol
	// by hand) just as well.
	if code, h, body := e.do(http.MethodPost, "/echo/say", nil, "hi"); code != 200 || body == "" || h.Get("Hail-Instance") != body ||
		h.Get("Hail-Router") != rt.ID() {
		t.Errorf("echo through the ingress: %d %q %v", code, body, h)
	}

	// hash with Hail-Key keeps a key on one backend.
	if _, err := r.KV.Config.Put(t.Context(), "route.web", []byte(`{"strategy":"hash"}`)); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 5*time.Second, func() error {
		for _, key := range []string{"user-1", "user-2", "user-3", "user-4"} {
			first := e.backendOf("/web/http/k", http.Header{"Hail-Key": {key}})
			for range 10 {
				if got := e.backendOf("/web/http/k", http.Header{"hail-key": {key}}); got != first {
					return fmt.Errorf("key %s went to %s and %s", key, first, got)
				}
			}
		}
		return nil
	})

	// Both backends' checks failing: 503 within a few seconds.
	a.failing.Store(true)
	b.failing.Store(true)
	bustest.Eventually(t, 5*time.Second, func() error {
		if code, _, body := e.do(http.MethodGet, "/web/http/x", nil, ""); code != http.StatusServiceUnavailable {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	a.failing.Store(false)
	b.failing.Store(false)
}

// A backend killed under load through the ingress: no request that could
// be retried fails; only those the dead agent held may (504), as on the
// NATS path.
func TestIngressBackendKilledUnderLoad(t *testing.T) {
	r := regiontest.New(t)
	r.StartNode(discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond}}})
	route := router.DefaultRoute() // retries included: a partial RouteDefaults means 0
	route.Timeout = time.Second
	rt := r.StartRouter(router.Config{Table: router.TableConfig{Route: route}})
	srv := httptest.NewServer(rt.Ingress())
	defer srv.Close()
	e := &ingressEnv{Region: r, url: srv.URL}
	a, b := newHTTPBackend(t, "a"), newHTTPBackend(t, "b")
	killA := behindAgent(t, r, a)
	behindAgent(t, r, b)
	bustest.Eventually(t, 10*time.Second, func() error {
		seen := map[string]bool{}
		for range 30 {
			seen[e.backendOf("/web/http/who", nil)] = true
		}
		if len(seen) != 2 {
			return fmt.Errorf("answered by %v", seen)
		}
		return nil
	})
	const workers, each = 4, 150
	var mu sync.Mutex
	codes := map[int]int{}
	var bodies []string
	var sent atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				if sent.Add(1) == workers*each/3 {
					killA()
				}
				code, _, body := e.do(http.MethodGet, "/web/http/x", nil, "")
				mu.Lock()
				codes[code]++
				if code != http.StatusAccepted {
					bodies = append(bodies, fmt.Sprintf("%d %s", code, strings.TrimSpace(body)))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	failed := workers*each - codes[http.StatusAccepted]
	if failed > workers || codes[http.StatusServiceUnavailable] > 0 {
		t.Errorf("outcomes %v: %d failed; at most the %d in flight at the kill may, and none with 503", codes, failed, workers)
	}
	t.Logf("backend killed under load: %v %q", codes, bodies)
}

// A client that goes away cancels its routed call: it is counted as
// canceled at once, not after the route's timeout.
func TestIngressClientGoneCancelsCall(t *testing.T) {
	r := regiontest.New(t)
	r.StartNode(discovery.Config{})
	set := metrics.NewSet()
	route := router.DefaultRoute()
	route.Timeout = 10 * time.Second
	rt := r.StartRouter(router.Config{Table: router.TableConfig{Route: route, Metrics: set}})
	srv := httptest.NewServer(rt.Ingress())
	defer srv.Close()
	fakeinst.Start(t, r.URL, fakeinst.Options{Service: "slow", Delay: 5 * time.Second})
	bustest.Eventually(t, 10*time.Second, func() error {
		if rt.Table().View("slow") == nil {
			return fmt.Errorf("slow not routable yet")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/slow/say", nil)
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("a 5 s answer came within 200 ms")
	}
	canceled := `hail_router_requests_total{service="slow",endpoint="say",outcome="canceled"}`
	bustest.Eventually(t, 2*time.Second, func() error {
		var b strings.Builder
		set.WritePrometheus(&b)
		if !strings.Contains(b.String(), canceled+" 1") {
			return fmt.Errorf("no canceled call counted yet")
		}
		return nil
	})
}
