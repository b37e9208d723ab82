package console

import (
	"fmt"
	"html"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/hailsd/hail/roles"
)

// cookieName holds a token set by the login form.
const cookieName = "hail_console"

// Guard puts the console behind tokens, origin checks and browser
// hardening headers. Probes and /metrics are not behind it: it wraps only
// the console's handler. Its zero value guards an open console: no token
// asked, everything else checked.
type Guard struct {
	// Tokens; nil lets everyone read and write (loopback, or insecure).
	Tokens *roles.Tokens
	// Hosts the Host header may name (host or host:port). Empty: any
	// with Tokens; without, only an IP address or localhost, names a DNS
	// rebinding cannot borrow (a page of evil.example whose name then
	// points at 127.0.0.1 is same-origin with a console that answers for
	// any Host, and an open console asks it for nothing else).
	Hosts []string
}

const csp = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"

// Wrap returns h behind the guard.
func (g Guard) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", csp)
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		if !g.hostAllowed(r.Host) {
			httpError(w, http.StatusMisdirectedRequest, "host %q is not one this console answers for (console.hosts; a console without tokens answers for IP addresses and localhost alone)", r.Host)
			return
		}
		write := r.Method != http.MethodGet && r.Method != http.MethodHead
		if write {
			if why := crossOrigin(r); why != "" {
				httpError(w, http.StatusForbidden, "cross-origin write refused: %s", why)
				return
			}
		}
		if r.URL.Path == "/login" {
			g.login(w, r)
			return
		}
		// The stylesheet and script are the same for everyone and hold
		// nothing of the region: the login form needs the stylesheet
		// before there is a token.
		public := !write && strings.HasPrefix(r.URL.Path, "/static/")
		if g.Tokens != nil && !public {
			s := g.Tokens.Scope(token(r))
			switch {
			case s == roles.ScopeNone && !write && r.URL.Path == "/" && !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer "):
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			case s == roles.ScopeNone:
				hd.Set("WWW-Authenticate", `Bearer realm="hail console"`)
				httpError(w, http.StatusUnauthorized, "a console token is needed (Authorization: Bearer <token>, or log in at /login)")
				return
			case write && s < roles.ScopeWrite:
				httpError(w, http.StatusForbidden, "this token may read, not write")
				return
			}
		}
		if write && !isJSON(r.Header.Get("Content-Type")) {
			// A form post from another site cannot set this type without a
			// preflight, which same-origin answers refuse. Every write
			// takes it, a DELETE or a POST without a body too: one rule,
			// with no exception to reason about.
			httpError(w, http.StatusUnsupportedMediaType, "writes take Content-Type: application/json (a DELETE or a POST without a body too)")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (g Guard) hostAllowed(host string) bool {
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	if len(g.Hosts) == 0 {
		if g.Tokens != nil {
			return true
		}
		name = strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
		return net.ParseIP(name) != nil || strings.EqualFold(name, "localhost")
	}
	for _, a := range g.Hosts {
		if strings.EqualFold(a, host) || strings.EqualFold(a, name) {
			return true
		}
	}
	return false
}

// crossOrigin says why a write did not come from the console's own page,
// or "" when it did (or came from a non-browser client, which sends
// neither header and needs a token anyway).
func crossOrigin(r *http.Request) string {
	switch s := r.Header.Get("Sec-Fetch-Site"); s {
	case "", "same-origin", "none":
	default:
		return "Sec-Fetch-Site is " + s
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return ""
	}
	u, err := url.Parse(o)
	if err != nil || !strings.EqualFold(u.Host, r.Host) {
		return "Origin " + o + " is not " + r.Host
	}
	return ""
}

func isJSON(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/json")
}

func token(r *http.Request) string {
	if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	if c, err := r.Cookie(cookieName); err == nil {
		return c.Value
	}
	return ""
}

const loginPage = `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>hail · log in</title>
<link rel="stylesheet" href="/static/style.css"></head><body>
<header><h1>hail</h1><span class="sub">service discovery on NATS</span></header>
<main><section class="login"><h2>Log in to the console</h2>
<form method="post" action="/login"><label>Token <input type="password" name="token" autocomplete="current-password" autofocus required></label>
<button type="submit">Log in</button></form><p class="error" role="alert">%s</p>
<p class="muted">A token with read or write scope; <code>secure init</code> (and <code>services/dev --secure</code>) writes one with write scope to console.token.</p></section></main></body></html>`

// login serves the form and, on a valid token, sets it as an HttpOnly,
// SameSite=Strict cookie. The form post is the one write that is not JSON;
// the origin check above still applies to it.
func (g Guard) login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if g.Tokens == nil { // an open console: nothing to log in to
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		fmt.Fprintf(w, loginPage, "")
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 4096)
		tok := r.PostFormValue("token")
		if g.Tokens == nil || g.Tokens.Scope(tok) == roles.ScopeNone {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, loginPage, html.EscapeString("That token is not one of this console's."))
			return
		}
		http.SetCookie(w, &http.Cookie{Name: cookieName, Value: tok, Path: "/", HttpOnly: true,
			SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
		http.Redirect(w, r, "/", http.StatusSeeOther)
	default:
		w.Header().Set("Allow", "GET, POST")
		httpError(w, http.StatusMethodNotAllowed, "login takes GET or POST")
	}
}

func httpError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, map[string]string{"error": fmt.Sprintf(format, args...)})
}
