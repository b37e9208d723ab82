package console

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/hailsd/hail/roles"
)

// guardReq is a request to a guarded console; empty fields are not sent,
// and the Host is console.example unless host says otherwise.
type guardReq struct {
	method, path, token, cookie, host, origin, site, ctype string
}

func (q guardReq) serve(h http.Handler) *httptest.ResponseRecorder {
	r := httptest.NewRequest(q.method, q.path, strings.NewReader("{}"))
	r.Host = "console.example"
	if q.host != "" {
		r.Host = q.host
	}
	if q.token != "" {
		r.Header.Set("Authorization", "Bearer "+q.token)
	}
	if q.cookie != "" {
		r.AddCookie(&http.Cookie{Name: cookieName, Value: q.cookie})
	}
	for k, v := range map[string]string{"Origin": q.origin, "Sec-Fetch-Site": q.site, "Content-Type": q.ctype} {
		if v != "" {
			r.Header.Set(k, v)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

type guardCase struct {
	name string
	req  guardReq
	want int
}

// checkGuard serves each case through g and checks its status, that the
// console behind was reached only when the status is 200, and the
// hardening headers on every answer.
func checkGuard(t *testing.T, g Guard, cases []guardCase) {
	t.Helper()
	reached := 0
	h := g.Wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		reached++
		w.WriteHeader(http.StatusOK)
	}))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := reached
			w := tc.req.serve(h)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d (%s)", w.Code, tc.want, w.Body)
			}
			if got, want := reached > before, tc.want == http.StatusOK; got != want {
				t.Fatalf("reached the console: %v, want %v", got, want)
			}
			for _, hd := range []string{"Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options"} {
				if w.Header().Get(hd) == "" {
					t.Errorf("no %s header", hd)
				}
			}
		})
	}
}

func TestGuard(t *testing.T) {
	toks, err := roles.ParseTokens("# operators\nread " + roles.HashToken("r-token") + "\nwrite " + roles.HashToken("w-token") + "\n")
	if err != nil {
		t.Fatal(err)
	}
	type req = guardReq
	checkGuard(t, Guard{Tokens: toks, Hosts: []string{"console.example", "127.0.0.1"}}, []guardCase{
		{"a read without a token is refused", req{method: "GET", path: "/api/services"}, http.StatusUnauthorized},
		{"the page without a token goes to the login form", req{method: "GET", path: "/"}, http.StatusSeeOther},
		{"a wrong token is refused", req{method: "GET", path: "/api/services", token: "nope"}, http.StatusUnauthorized},
		{"a read token reads", req{method: "GET", path: "/api/services", token: "r-token"}, http.StatusOK},
		{"a write token reads", req{method: "GET", path: "/api/services", token: "w-token"}, http.StatusOK},
		{"the login cookie reads", req{method: "GET", path: "/api/services", cookie: "r-token"}, http.StatusOK},
		{"a write with a read token is refused", req{method: "PUT", path: "/api/routes/echo", token: "r-token", ctype: "application/json"}, http.StatusForbidden},
		{"a write with a write token is served", req{method: "PUT", path: "/api/routes/echo", token: "w-token", ctype: "application/json"}, http.StatusOK},
		{"a write without JSON is refused", req{method: "POST", path: "/api/instances/x/drain", token: "w-token", ctype: "text/plain"}, http.StatusUnsupportedMediaType},
		{"a cross-origin write is refused, token and all", req{method: "POST", path: "/api/instances/x/drain", cookie: "w-token", ctype: "application/json", origin: "https://evil.example"}, http.StatusForbidden},
		{"a cross-site fetch is refused", req{method: "DELETE", path: "/api/routes/echo", cookie: "w-token", ctype: "application/json", site: "cross-site"}, http.StatusForbidden},
		{"a same-origin write is served", req{method: "DELETE", path: "/api/routes/echo", cookie: "w-token", ctype: "application/json", origin: "http://console.example", site: "same-origin"}, http.StatusOK},
		{"a host not on the list is refused", req{method: "GET", path: "/api/services", token: "r-token", host: "rebind.example"}, http.StatusMisdirectedRequest},
		{"a listed host with a port is served", req{method: "GET", path: "/api/services", token: "r-token", host: "127.0.0.1:8081"}, http.StatusOK},
		{"the stylesheet needs no token (the login form uses it)", req{method: "GET", path: "/static/style.css"}, http.StatusOK},
		{"a write under /static/ needs one", req{method: "POST", path: "/static/style.css", ctype: "application/json"}, http.StatusUnauthorized},
	})
	t.Run("tokens and no host list", func(t *testing.T) {
		checkGuard(t, Guard{Tokens: toks}, []guardCase{
			// The token is the defence: a rebound name has no cookie.
			{"any host is served", req{method: "GET", path: "/api/services", token: "r-token", host: "discovery-1:8080"}, http.StatusOK},
		})
	})
}

// A console without tokens (the dev stack's, a discovery node's on
// loopback) asks for no token and checks everything else: any web page
// the operator visits can reach it.
func TestOpenGuard(t *testing.T) {
	const local = "127.0.0.1:8080"
	type req = guardReq
	checkGuard(t, Guard{}, []guardCase{
		{"a read is served", req{method: "GET", path: "/api/services", host: local}, http.StatusOK},
		{"a same-origin JSON write is served", req{method: "POST", path: "/api/routes/echo", host: local, origin: "http://" + local, site: "same-origin", ctype: "application/json"}, http.StatusOK},
		{"a JSON write from a client that is no browser is served", req{method: "POST", path: "/api/routes/echo", host: local, ctype: "application/json"}, http.StatusOK},
		{"a cross-site text/plain write is refused", req{method: "POST", path: "/api/routes/echo", host: local, origin: "http://evil.example", ctype: "text/plain"}, http.StatusForbidden},
		{"a cross-site drain is refused", req{method: "POST", path: "/api/instances/x/drain", host: local, site: "cross-site", ctype: "application/x-www-form-urlencoded"}, http.StatusForbidden},
		{"a page of another port of the same host is refused", req{method: "POST", path: "/api/routes/echo", host: local, origin: "http://127.0.0.1:9000", site: "same-site", ctype: "application/json"}, http.StatusForbidden},
		{"a write without JSON is refused", req{method: "POST", path: "/api/routes/echo", host: local, ctype: "text/plain"}, http.StatusUnsupportedMediaType},
		{"a DELETE without the JSON type is refused", req{method: "DELETE", path: "/api/routes/echo", host: local}, http.StatusUnsupportedMediaType},
		{"a DELETE with the JSON type is served, as the README's curl sends it", req{method: "DELETE", path: "/api/routes/echo", host: local, ctype: "application/json"}, http.StatusOK},
		{"a rebound name is refused", req{method: "GET", path: "/api/services", host: "evil.example:8080"}, http.StatusMisdirectedRequest},
		{"a rebound name's same-origin write is refused", req{method: "POST", path: "/api/routes/echo", host: "evil.example:8080", origin: "http://evil.example:8080", ctype: "application/json"}, http.StatusMisdirectedRequest},
		{"localhost is served", req{method: "GET", path: "/api/services", host: "localhost:8080"}, http.StatusOK},
		{"an IPv6 address is served", req{method: "GET", path: "/api/services", host: "[::1]:8080"}, http.StatusOK},
		{"the login form sends to the page: no token to give", req{method: "GET", path: "/login", host: local}, http.StatusSeeOther},
	})
	t.Run("a host list", func(t *testing.T) {
		checkGuard(t, Guard{Hosts: []string{"hail.internal"}}, []guardCase{
			{"a listed name is served", req{method: "GET", path: "/api/services", host: "hail.internal:8080"}, http.StatusOK},
			{"an address not listed is refused", req{method: "GET", path: "/api/services", host: local}, http.StatusMisdirectedRequest},
		})
	})
}

func TestLoginSetsAStrictHttpOnlyCookie(t *testing.T) {
	toks, err := roles.ParseTokens("read " + roles.HashToken("r-token"))
	if err != nil {
		t.Fatal(err)
	}
	h := Guard{Tokens: toks}.Wrap(http.NotFoundHandler())
	post := func(tok string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/login", strings.NewReader(url.Values{"token": {tok}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := post("wrong"); w.Code != http.StatusUnauthorized || len(w.Result().Cookies()) != 0 {
		t.Fatalf("wrong token: status %d, cookies %v", w.Code, w.Result().Cookies())
	}
	w := post("r-token")
	cs := w.Result().Cookies()
	if w.Code != http.StatusSeeOther || len(cs) != 1 {
		t.Fatalf("status %d, cookies %v", w.Code, cs)
	}
	if c := cs[0]; c.Name != cookieName || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookie %+v: want HttpOnly, SameSite=Strict", c)
	}
}

func TestParseTokens(t *testing.T) {
	good := roles.HashToken("x")
	for _, tc := range []struct {
		name, text, wantErr string
	}{
		{"a read and a write token", "read " + good + "\nwrite " + roles.HashToken("y"), ""},
		{"no token", "# nothing\n", "no token"},
		{"an unknown scope", "admin " + good, "scope \"admin\""},
		{"a plain token instead of a hash", "read hunter2", "line 1: the hash"},
		{"a short hash", "read sha256:abcd", "line 1: the hash"},
		{"three fields", "read " + good + " extra", "line 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := roles.ParseTokens(tc.text)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error %q repeats the secret", err)
			}
		})
	}
}

func FuzzParseTokens(f *testing.F) {
	f.Add("read " + roles.HashToken("x"))
	f.Add("write sha256:zz\n#c\n")
	f.Fuzz(func(t *testing.T, text string) {
		toks, err := roles.ParseTokens(text)
		if err == nil && toks.Scope("") != roles.ScopeNone {
			t.Fatal("the empty token has a scope")
		}
	})
}
