package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
)

// echoed is what the backend saw of a request.
type echoed struct {
	Method, Path, RawPath, Query, Body string
	Header                             http.Header
}

func backend(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/status/"):
			var code int
			fmt.Sscan(strings.TrimPrefix(r.URL.Path, "/status/"), &code)
			w.Header().Set("X-Why", "asked")
			w.WriteHeader(code)
			fmt.Fprintf(w, "status %d", code)
			return
		case r.URL.Path == "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Backend", "yes")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(echoed{Method: r.Method, Path: r.URL.Path, RawPath: r.URL.EscapedPath(), Query: r.URL.RawQuery, Body: string(body), Header: r.Header})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestBridge(t *testing.T) {
	r := region(t)
	srv := backend(t)
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closed.Addr().String()
	closed.Close()
	file := filepath.Join(t.TempDir(), "agent.yaml")
	writeConfig(t, file, fmt.Sprintf(`services:
  - name: web
    address: %[1]s
    port: %[2]s
    bridge:
      timeout: 300ms
      endpoints:
        - {name: hello, method: GET, path: /hello}
        - {name: http, path: "*"}
  - name: gone
    address: 127.0.0.1
    bridge:
      base_url: http://%[3]s
      endpoints:
        - {name: http, path: "*"}
`, host, port, closedAddr))
	h := watchHealth(t, r.NC)
	startAgent(t, r, file)
	// The services announce at once, in no order.
	registered := map[string]bool{}
	for deadline := time.After(5 * time.Second); !registered["web"] || !registered["gone"]; {
		select {
		case ev := <-h.ch:
			registered[ev.Service] = true
		case <-deadline:
			t.Fatalf("registered %v within 5s, want web and gone", registered)
		}
	}
	rec, _ := instanceOf(t, r, "web")
	if len(rec.Endpoints) != 2 {
		t.Fatalf("announced endpoints %v", rec.Endpoints)
	}

	req := func(subject string, hdr nats.Header, body string) *nats.Msg {
		t.Helper()
		m, err := r.NC.RequestMsg(&nats.Msg{Subject: subject, Header: hdr, Data: []byte(body)}, 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		return m
	}
	// Method, path (escaped as received), query, headers and body arrive
	// as sent; status, headers and body come back.
	m := req("hail.svc.web.http", nats.Header{"Hail-Method": {"PUT"}, "Hail-Path": {"/a%2Fb/c?x=1&y=two"}, "X-User": {"ann"}, "Nats-Msg-Id": {"n"}}, "payload")
	var got echoed
	if err := json.Unmarshal(m.Data, &got); err != nil {
		t.Fatalf("reply %q: %v", m.Data, err)
	}
	if got.Method != "PUT" || got.RawPath != "/a%2Fb/c" || got.Query != "x=1&y=two" || got.Body != "payload" || got.Header.Get("X-User") != "ann" {
		t.Errorf("backend saw %+v", got)
	}
	for k := range got.Header {
		if strings.HasPrefix(k, "Hail-") || strings.HasPrefix(k, "Nats-") {
			t.Errorf("backend got header %s", k)
		}
	}
	if m.Header.Get("Hail-Status") != "201" || m.Header.Get("X-Backend") != "yes" || m.Header.Get(events.HeaderInstance) != rec.ID || m.Header.Get(events.HeaderServiceErrorCode) != "" {
		t.Errorf("reply headers %v", m.Header)
	}
	// Default method: POST with a payload, GET without; path /.
	for body, method := range map[string]string{"": "GET", "x": "POST"} {
		m = req("hail.svc.web.http", nil, body)
		_ = json.Unmarshal(m.Data, &got)
		if got.Method != method || got.Path != "/" {
			t.Errorf("payload %q: %s %s, want %s /", body, got.Method, got.Path, method)
		}
	}
	// A fixed endpoint ignores Hail-Path and Hail-Method; reached on the
	// instance's own subject too.
	m = req("hail.inst."+rec.ID+".hello", nats.Header{"Hail-Path": {"/elsewhere"}, "Hail-Method": {"DELETE"}}, "")
	_ = json.Unmarshal(m.Data, &got)
	if got.Method != "GET" || got.Path != "/hello" {
		t.Errorf("fixed endpoint: %s %s", got.Method, got.Path)
	}
	// 404 and 500 come back as such, and as Nats-Service-Error-Code.
	for _, code := range []int{404, 500} {
		m = req("hail.svc.web.http", nats.Header{"Hail-Path": {fmt.Sprintf("/status/%d", code)}}, "")
		if m.Header.Get("Hail-Status") != fmt.Sprint(code) || m.Header.Get(events.HeaderServiceErrorCode) != fmt.Sprint(code) ||
			m.Header.Get("X-Why") != "asked" || string(m.Data) != fmt.Sprintf("status %d", code) {
			t.Errorf("%d: %v %q", code, m.Header, m.Data)
		}
	}
	// Unreachable: 502; no answer in time: 504; a path to another host: 400.
	for _, tt := range []struct {
		subject string
		hdr     nats.Header
		code    string
	}{
		{"hail.svc.gone.http", nil, "502"},
		{"hail.svc.web.http", nats.Header{"Hail-Path": {"/slow"}}, "504"},
		{"hail.svc.web.http", nats.Header{"Hail-Path": {"//evil.example/x"}}, "400"},
		{"hail.svc.web.http", nats.Header{"Hail-Path": {"http://evil.example/x"}}, "400"},
	} {
		m = req(tt.subject, tt.hdr, "")
		if m.Header.Get(events.HeaderServiceErrorCode) != tt.code || m.Header.Get("Hail-Status") != tt.code {
			t.Errorf("%s %v: %v %q, want %s", tt.subject, tt.hdr, m.Header, m.Data, tt.code)
		}
	}
	// The heartbeat reply reports the capacity.
	bustest.Eventually(t, 2*time.Second, func() error {
		m, err := r.NC.Request("hail.hb."+rec.ID, []byte(`{}`), time.Second)
		if err != nil {
			return err
		}
		var hb events.HeartbeatReply
		if err := json.Unmarshal(m.Data, &hb); err != nil || hb.Capacity != 64 {
			return fmt.Errorf("heartbeat reply %s", m.Data)
		}
		return nil
	})
}
