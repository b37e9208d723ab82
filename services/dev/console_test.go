package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/credentials"
	"github.com/hailsd/hail/events"
)

// consoleBase is the console's URL as the welcome prints it.
func (d *devStack) consoleBase(t *testing.T) string {
	t.Helper()
	line, ok := d.out.Line("console     http://")
	if !ok {
		t.Fatalf("welcome lacks the console:\n%s", d.out.String())
	}
	return strings.TrimSuffix(strings.Fields(line)[1], "/")
}

// consoleCall is one request to the console, as a browser or curl would
// send it; empty fields are not sent.
type consoleCall struct {
	method, path, body, ctype, origin, site, token, cookie string
}

// do sends c and returns the status and the body (up to 64 KiB, which
// holds any answer of a one-instance stack).
func (c consoleCall) do(t *testing.T, base string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), c.method, base+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"Content-Type": c.ctype, "Origin": c.origin, "Sec-Fetch-Site": c.site} {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.cookie != "" {
		req.AddCookie(&http.Cookie{Name: "hail_console", Value: c.cookie})
	}
	// No redirects followed: a 303 to /login is an answer here.
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(b)
}

// echoID is a registered echo instance's id, read through the console.
func echoID(t *testing.T, base, token string) string {
	t.Helper()
	var id string
	bustest.Eventually(t, 10*time.Second, func() error {
		code, body := consoleCall{method: "GET", path: "/api/instances?service=echo", token: token}.do(t, base)
		var insts []struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal([]byte(body), &insts); code != http.StatusOK || err != nil || len(insts) == 0 {
			return fmt.Errorf("instances: %d %s", code, body)
		}
		id = insts[0].ID
		return nil
	})
	return id
}

// The open dev console (no --secure) asks for no token, but a web page the
// developer visits cannot write through it: cross-site writes, JSON or
// not, are refused and leave hail_config alone; the console's own
// same-origin JSON write is served.
func TestDevConsoleRefusesCrossSiteWrites(t *testing.T) {
	d := startDev(t, "--http-addr", "127.0.0.1:0", "--echo", "1")
	base := d.consoleBase(t)
	id := echoID(t, base, "")
	nc := bustest.Connect(t, d.url)
	kv := bustest.Buckets(t, nc)
	for _, c := range []consoleCall{
		{method: "POST", path: "/api/routes/echo", body: `{"strategy":"weighted","weights":{"` + id + `":0}}`, ctype: "text/plain", origin: "http://evil.example"},
		{method: "POST", path: "/api/routes/echo", body: `{"strategy":"hash"}`, ctype: "application/json", origin: "http://evil.example", site: "cross-site"},
		{method: "POST", path: "/api/instances/" + id + "/drain", body: "x=1", ctype: "application/x-www-form-urlencoded", origin: "http://evil.example", site: "cross-site"},
		{method: "DELETE", path: "/api/routes/echo", origin: "http://localhost:9000", site: "same-site"},
	} {
		if code, body := c.do(t, base); code != http.StatusForbidden {
			t.Errorf("%s %s from %s: %d %s, want 403", c.method, c.path, c.origin, code, body)
		}
	}
	if code, _ := (consoleCall{method: "GET", path: "/api/services"}).do(t, base); code != http.StatusOK {
		t.Errorf("a read of the open console: %d, want 200", code)
	}
	if _, err := kv.Config.Get(t.Context(), events.RouteConfigKey("echo")); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("hail_config %s after cross-site writes: %v, want no key", events.RouteConfigKey("echo"), err)
	}
	same := consoleCall{method: "POST", path: "/api/routes/echo", body: `{"strategy":"hash"}`, ctype: "application/json", origin: base, site: "same-origin"}
	if code, body := same.do(t, base); code != http.StatusOK {
		t.Fatalf("a same-origin JSON write: %d %s, want 200", code, body)
	}
	e, err := kv.Config.Get(t.Context(), events.RouteConfigKey("echo"))
	if err != nil || !strings.Contains(string(e.Value()), `"hash"`) {
		t.Fatalf("hail_config after the same-origin write: %v", err)
	}
	for _, hd := range []string{"Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options"} {
		resp, err := http.Get(base + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get(hd) == "" {
			t.Errorf("the page has no %s header", hd)
		}
	}
	d.stop(t)
}

// With --secure the console is guarded as a discovery node's with
// console.tokens_file: the token of `secure init`, whose file the welcome
// names, reads and writes; nothing else does, and a cross-site write is
// refused even with the login cookie.
func TestSecureDevConsoleNeedsTheToken(t *testing.T) {
	store := t.TempDir()
	d := startDev(t, "--secure", "--store-dir", store, "--echo", "1", "--http-addr", "127.0.0.1:0")
	base := d.consoleBase(t)
	path := filepath.Join(store, "secure", credentials.ConsoleTokenFile)
	if !strings.Contains(d.out.String(), "token in "+path) {
		t.Fatalf("welcome does not name the token's file %s:\n%s", path, d.out.String())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(b))
	if strings.Contains(d.out.String(), token) {
		t.Fatal("the welcome prints the console token")
	}
	id := echoID(t, base, token)
	route := `{"strategy":"weighted","weights":{"` + id + `":0}}`
	for _, tc := range []struct {
		name string
		call consoleCall
		want int
	}{
		{"the API without a token", consoleCall{method: "GET", path: "/api/services"}, http.StatusUnauthorized},
		{"the page without a token goes to log in", consoleCall{method: "GET", path: "/"}, http.StatusSeeOther},
		{"a wrong token", consoleCall{method: "GET", path: "/api/services", token: "guess"}, http.StatusUnauthorized},
		{"a write without a token", consoleCall{method: "POST", path: "/api/routes/echo", body: route, ctype: "application/json"}, http.StatusUnauthorized},
		{"a cross-site text/plain write with the cookie", consoleCall{method: "POST", path: "/api/routes/echo", body: route, ctype: "text/plain", origin: "http://evil.example", cookie: token}, http.StatusForbidden},
		{"a cross-site form drain with the cookie", consoleCall{method: "POST", path: "/api/instances/" + id + "/drain", body: "x=1", ctype: "application/x-www-form-urlencoded", origin: "http://evil.example", site: "cross-site", cookie: token}, http.StatusForbidden},
		{"the page with the token", consoleCall{method: "GET", path: "/", token: token}, http.StatusOK},
		{"the API with the token", consoleCall{method: "GET", path: "/api/routes", token: token}, http.StatusOK},
		{"the login cookie reads", consoleCall{method: "GET", path: "/api/services", cookie: token}, http.StatusOK},
	} {
		if code, body := tc.call.do(t, base); code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.want)
		}
	}
	if code, body := (consoleCall{method: "GET", path: "/api/routes", token: token}).do(t, base); code != http.StatusOK || strings.Contains(body, "echo") {
		t.Fatalf("routes after refused writes: %d %s, want none", code, body)
	}
	same := consoleCall{method: "POST", path: "/api/routes/echo", body: `{"strategy":"hash"}`, ctype: "application/json", origin: base, site: "same-origin", cookie: token}
	if code, body := same.do(t, base); code != http.StatusOK {
		t.Fatalf("a same-origin write with the cookie: %d %s, want 200", code, body)
	}
	d.stop(t)
}
