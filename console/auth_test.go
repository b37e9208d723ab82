package console

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/hailsd/hail/roles"
)

func TestGuard(t *testing.T) {
	toks, err := ParseTokens("# operators\nread " + roles.HashToken("r-token") + "\nwrite " + roles.HashToken("w-token") + "\n")
	if err != nil {
		t.Fatal(err)
	}
	reached := 0
	h := Guard{Tokens: toks, Hosts: []string{"console.example", "127.0.0.1"}}.Wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		reached++
		w.WriteHeader(http.StatusOK)
	}))
	type req struct {
		method, path, token, cookie, host, origin, site, ctype string
	}
	for _, tc := range []struct {
		name string
		req  req
		want int
	}{
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := reached
			r := httptest.NewRequest(tc.req.method, tc.req.path, nil)
			r.Host = "console.example"
			if tc.req.host != "" {
				r.Host = tc.req.host
			}
			if tc.req.token != "" {
				r.Header.Set("Authorization", "Bearer "+tc.req.token)
			}
			if tc.req.cookie != "" {
				r.AddCookie(&http.Cookie{Name: cookieName, Value: tc.req.cookie})
			}
			for k, v := range map[string]string{"Origin": tc.req.origin, "Sec-Fetch-Site": tc.req.site, "Content-Type": tc.req.ctype} {
				if v != "" {
					r.Header.Set(k, v)
				}
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
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

func TestLoginSetsAStrictHttpOnlyCookie(t *testing.T) {
	toks, err := ParseTokens("read " + roles.HashToken("r-token"))
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
			_, err := ParseTokens(tc.text)
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
		toks, err := ParseTokens(text)
		if err == nil && toks.Scope("") != ScopeNone {
			t.Fatal("the empty token has a scope")
		}
	})
}
