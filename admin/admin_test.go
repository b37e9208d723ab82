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
	srv := httptest.NewServer(admin.Handler(set, ready.Load, nil))
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
