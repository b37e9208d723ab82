package greeter

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestGreeter(t *testing.T) {
	srv := httptest.NewServer((&Server{}).Handler())
	defer srv.Close()
	do := func(method, path string) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	steps := []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/hello?name=ann", 200, "hello, ann"},
		{"GET", "/health", 200, "ok"},
		{"POST", "/health/fail", 200, "503"},
		{"GET", "/health", 503, "failing"},
		{"POST", "/health/recover", 200, "200"},
		{"GET", "/health", 200, "ok"},
	}
	for _, s := range steps {
		if code, body := do(s.method, s.path); code != s.code || !strings.Contains(body, s.body) {
			t.Errorf("%s %s: %d %q, want %d with %q", s.method, s.path, code, body, s.code, s.body)
		}
	}
}
