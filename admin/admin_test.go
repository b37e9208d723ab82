package admin_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/VictoriaMetrics/metrics"
	"github.com/hailsd/hail/admin"
)

func TestHandler(t *testing.T) {
	set := metrics.NewSet()
	set.GetOrCreateCounter(`hail_test_total{outcome="ok"}`).Add(3)
	var ready atomic.Bool
	srv := httptest.NewServer(admin.Handler(set, ready.Load, nil, false))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	tests := []struct {
		name, path string
		ready      bool
		code       int
		contains   string
	}{
		{"metrics", "/metrics", false, 200, `hail_test_total{outcome="ok"} 3`},
		{"process metrics", "/metrics", false, 200, "go_goroutines"},
		{"healthz", "/healthz", false, 200, "ok"},
		{"readyz before ready", "/readyz", false, 503, "not ready"},
		{"readyz when ready", "/readyz", true, 200, "ready"},
		{"unknown path", "/nope", true, 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready.Store(tt.ready)
			code, body := get(tt.path)
			if code != tt.code || !strings.Contains(body, tt.contains) {
				t.Errorf("GET %s = %d %q, want %d containing %q", tt.path, code, body, tt.code, tt.contains)
			}
		})
	}
}

// Go's profiles are served under /debug/pprof/ only when asked for, and
// a UI mounted at "/" serves neither them nor that path when they are
// off.
func TestHandlerProfiles(t *testing.T) {
	ui := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "the ui") })
	tests := []struct {
		name     string
		profiles admin.Profiles
		ui       http.Handler
		path     string
		code     int
		contains string
	}{
		{"on: index", true, nil, "/debug/pprof/", 200, "goroutine"},
		{"on: cmdline", true, nil, "/debug/pprof/cmdline", 200, "admin.test"},
		{"on: a named profile", true, nil, "/debug/pprof/goroutine?debug=1", 200, "goroutine profile"},
		{"on: symbol", true, nil, "/debug/pprof/symbol", 200, "num_symbols"},
		{"on with a ui: index", true, ui, "/debug/pprof/", 200, "goroutine"},
		{"on with a ui: cmdline", true, ui, "/debug/pprof/cmdline", 200, "admin.test"},
		{"on with a ui: the ui elsewhere", true, ui, "/console", 200, "the ui"},
		{"off: index", false, nil, "/debug/pprof/", 404, ""},
		{"off: cmdline", false, nil, "/debug/pprof/cmdline", 404, ""},
		{"off: a named profile", false, nil, "/debug/pprof/heap", 404, ""},
		{"off with a ui: index", false, ui, "/debug/pprof/", 404, ""},
		{"off with a ui: cmdline", false, ui, "/debug/pprof/cmdline", 404, ""},
		{"off with a ui: profile", false, ui, "/debug/pprof/profile", 404, ""},
		{"off with a ui: the ui elsewhere", false, ui, "/console", 200, "the ui"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(admin.Handler(metrics.NewSet(), func() bool { return true }, tt.ui, tt.profiles))
			defer srv.Close()
			resp, err := http.Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.code || !strings.Contains(string(body), tt.contains) {
				t.Errorf("GET %s = %d %.200q, want %d containing %q", tt.path, resp.StatusCode, body, tt.code, tt.contains)
			}
		})
	}
}
