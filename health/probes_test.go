package health

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
)

func probe(t *testing.T, p interface {
	Probe(context.Context) Result
}, timeout time.Duration) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	return p.Probe(ctx)
}

func TestHTTP(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Probe") != "1" || r.Method != http.MethodHead && r.Method != http.MethodGet {
			http.Error(w, "probe header or method missing", http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, "all good")
	})
	mux.HandleFunc("/busy", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "slow down", http.StatusTooManyRequests) })
	mux.HandleFunc("/down", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "db gone", http.StatusServiceUnavailable) })
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, strings.Repeat("x", 100_000)) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	closed := httptest.NewServer(mux)
	closed.Close()
	tlsSrv := httptest.NewTLSServer(mux)
	defer tlsSrv.Close()
	probeHeader := http.Header{"X-Probe": {"1"}}

	tests := []struct {
		name   string
		h      *HTTP
		want   events.Status
		output string
	}{
		{"2xx is passing", NewHTTP(srv.URL+"/ok", "", probeHeader, false), events.Passing, "200 OK\nall good"},
		{"the method is used", NewHTTP(srv.URL+"/ok", http.MethodHead, probeHeader, false), events.Passing, "HEAD " + srv.URL + "/ok: 200 OK"},
		{"headers are sent", NewHTTP(srv.URL+"/ok", "", nil, false), events.Critical, "400 Bad Request"},
		{"429 is warning", NewHTTP(srv.URL+"/busy", "", nil, false), events.Warning, "429 Too Many Requests"},
		{"503 is critical", NewHTTP(srv.URL+"/down", "", nil, false), events.Critical, "GET " + srv.URL + "/down: 503 Service Unavailable\ndb gone"},
		{"a redirect is not followed", NewHTTP(srv.URL+"/moved", "", probeHeader, false), events.Critical, "302 Found"},
		{"the timeout is critical", NewHTTP(srv.URL+"/slow", "", nil, false), events.Critical, "deadline exceeded"},
		{"a closed port is critical", NewHTTP(closed.URL+"/ok", "", nil, false), events.Critical, "connection refused"},
		{"an unknown CA is critical", NewHTTP(tlsSrv.URL+"/ok", "", probeHeader, false), events.Critical, "certificate"},
		{"tls_skip_verify accepts it", NewHTTP(tlsSrv.URL+"/ok", "", probeHeader, true), events.Passing, "200 OK"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer tt.h.Close()
			timeout := 2 * time.Second // room for a TLS handshake on a loaded machine
			if strings.Contains(tt.name, "timeout") {
				timeout = 300 * time.Millisecond
			}
			got := probe(t, tt.h, timeout)
			if got.Status != tt.want || !strings.Contains(got.Output, tt.output) {
				t.Errorf("got %s %q, want %s with %q", got.Status, got.Output, tt.want, tt.output)
			}
		})
	}
	t.Run("the body is read up to 4 KiB", func(t *testing.T) {
		h := NewHTTP(srv.URL+"/big", "", nil, false)
		defer h.Close()
		if got := probe(t, h, time.Second); got.Status != events.Passing || len(got.Output) > MaxOutput {
			t.Errorf("got %s with %d bytes of output", got.Status, len(got.Output))
		}
	})
}

// A check URL's user information (a password, a token as the user) is in
// no output, whether the probe passes, fails to connect or cannot make
// its request; the server still gets the credentials.
func TestOutputsRedactUserInfo(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "bob" || p != "hunter2" {
			http.Error(w, "who are you", http.StatusUnauthorized)
		}
	}))
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	withUser := func(base, user string) string {
		return strings.Replace(base, "http://", "http://"+user+"@", 1) + "/health"
	}
	for _, tt := range []struct {
		name, url string
		want      events.Status
	}{
		{"passing", withUser(srv.URL, "bob:hunter2"), events.Passing},
		{"a token as the user", withUser(closed.URL, "t0k3n"), events.Critical},
		{"refused", withUser(closed.URL, "bob:hunter2"), events.Critical},
		{"no request made", "http://bob:hunter2@127.0.0.1:port/health", events.Critical},
		{"an @ in the password", withUser(closed.URL, "bob:hun@ter2"), events.Critical},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHTTP(tt.url, "", nil, false)
			defer h.Close()
			got := probe(t, h, 2*time.Second)
			if got.Status != tt.want || !strings.Contains(got.Output, "REDACTED@") {
				t.Errorf("got %s %q, want %s naming the URL redacted", got.Status, got.Output, tt.want)
			}
			for _, secret := range []string{"hunter2", "t0k3n", "ter2", "bob"} {
				if strings.Contains(got.Output, secret) {
					t.Errorf("output %q holds %q", got.Output, secret)
				}
			}
		})
	}
	tl := NewTTL(time.Minute)
	if err := tl.Report("pass", "synced from https://deploy:s3cret@git.example/repo", time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := tl.Result(time.Now()); strings.Contains(got.Output, "s3cret") {
		t.Errorf("a TTL report's output %q holds the password", got.Output)
	}
}

func TestTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if got := probe(t, TCP{Addr: l.Addr().String()}, time.Second); got.Status != events.Passing {
		t.Errorf("listening: %s %q", got.Status, got.Output)
	}
	addr := l.Addr().String()
	l.Close()
	if got := probe(t, TCP{Addr: addr}, time.Second); got.Status != events.Critical || !strings.Contains(got.Output, "refused") {
		t.Errorf("closed: %s %q", got.Status, got.Output)
	}
	if got := probe(t, TCP{Addr: "127.0.0.1:notaport"}, time.Second); got.Status != events.Critical {
		t.Errorf("bad address: %s %q", got.Status, got.Output)
	}
}

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "check.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestScript(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		want   events.Status
		output string
	}{
		{"exit 0 is passing", `echo disk ok`, events.Passing, "disk ok"},
		{"exit 1 is warning", `echo 91% full >&2; exit 1`, events.Warning, "91% full"},
		{"exit 2 is critical", `echo broken; exit 2`, events.Critical, "broken"},
		{"stdout and stderr together", `echo out; echo err >&2`, events.Passing, "err"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := probe(t, Script{Args: []string{script(t, tt.body)}}, 5*time.Second)
			if got.Status != tt.want || !strings.Contains(got.Output, tt.output) {
				t.Errorf("got %s %q, want %s with %q", got.Status, got.Output, tt.want, tt.output)
			}
		})
	}
	t.Run("arguments without a shell", func(t *testing.T) {
		got := probe(t, Script{Args: []string{"/bin/echo", "$HOME", "a b"}}, time.Second)
		if got.Status != events.Passing || got.Output != "$HOME a b\n" {
			t.Errorf("got %s %q", got.Status, got.Output)
		}
	})
	t.Run("output cut at 4 KiB", func(t *testing.T) {
		got := probe(t, Script{Args: []string{script(t, `head -c 100000 /dev/zero | tr '\0' x`)}}, 5*time.Second)
		if got.Status != events.Passing || len(got.Output) != MaxOutput {
			t.Errorf("got %s with %d bytes", got.Status, len(got.Output))
		}
	})
	t.Run("a missing command is critical", func(t *testing.T) {
		if got := probe(t, Script{Args: []string{"/nonexistent/check"}}, time.Second); got.Status != events.Critical {
			t.Errorf("got %s %q", got.Status, got.Output)
		}
	})
	t.Run("the timeout kills the process group", func(t *testing.T) {
		pidFile := filepath.Join(t.TempDir(), "child.pid")
		p := script(t, `sleep 30 & echo $! > `+pidFile+`; wait`)
		got := probe(t, Script{Args: []string{p}}, 300*time.Millisecond)
		if got.Status != events.Critical || !strings.Contains(got.Output, "timed out") {
			t.Errorf("got %s %q", got.Status, got.Output)
		}
		data, err := os.ReadFile(pidFile)
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		bustest.Eventually(t, 2*time.Second, func() error {
			if err := syscall.Kill(pid, 0); err == nil {
				return fmt.Errorf("the script's child %d still runs", pid)
			}
			return nil
		})
	})
}

func TestTTL(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	c := NewTTL(15 * time.Second)
	steps := []struct {
		at     time.Duration
		report string // "" to only read
		want   events.Status
	}{
		{0, "", events.Critical},                    // critical until the first report
		{time.Second, "pass", events.Passing},       //
		{15 * time.Second, "", events.Passing},      // within the TTL
		{17 * time.Second, "", events.Critical},     // nothing for 16 s
		{18 * time.Second, "warn", events.Warning},  // a report brings it back
		{30 * time.Second, "", events.Warning},      // warn restarted the clock
		{32 * time.Second, "fail", events.Critical}, //
		{46 * time.Second, "pass", events.Passing},  //
		{61*time.Second + 1, "", events.Critical},   // expired again
	}
	for i, s := range steps {
		now := t0.Add(s.at)
		if s.report != "" {
			if err := c.Report(s.report, "reported "+s.report, now); err != nil {
				t.Fatal(err)
			}
		}
		if got := c.Result(now); got.Status != s.want {
			t.Fatalf("step %d (at %v, report %q): %s %q, want %s", i, s.at, s.report, got.Status, got.Output, s.want)
		}
	}
	if err := c.Report("ok", "", t0); err == nil {
		t.Error("a report that is not pass, warn or fail was taken")
	}
}
