package console

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/hailsd/hail/events"
)

//go:embed web
var web embed.FS

// routeWritten answers a route write: the route as stored, and a warning
// when no instance of its service is registered (a typo, or set ahead).
type routeWritten struct {
	events.RouteConfig
	Warning string `json:"warning,omitempty"`
}

// maxBody bounds a write request's body, as events bound a message.
const maxBody = events.MaxPayload

// Handler serves the admin page and the JSON API behind it, always
// behind g: tokens are optional (g.Tokens nil: an open console), the
// origin and content-type checks, the Host allowlist and the browser
// hardening headers are not, since any web page the operator visits can
// reach a console on loopback. admin.Handler mounts it next to /metrics.
func (r *Region) Handler(g Guard) http.Handler {
	static, _ := fs.Sub(web, "web/static") // present: embedded above
	versions := staticVersions(static)
	tmpl := template.Must(template.New("").Funcs(template.FuncMap{
		// UUIDv7s of one start share their first 8 to 13 characters: the
		// last 8 tell instances apart (the full id is on hover).
		"short": func(id string) string { return "…" + id[max(0, len(id)-8):] },
		"spark": sparkline,
		// A static file's URL carries its content's hash: the browser keeps
		// it until it changes instead of asking on every page load.
		"static": func(name string) string { return "/static/" + name + "?v=" + versions[name] },
		"pct":    func(f float64) string { return strconv.FormatFloat(100*f, 'f', 1, 64) + "%" },
		"hostport": func(addr string, port events.Port) string {
			if port == 0 {
				return addr
			}
			return net.JoinHostPort(addr, strconv.Itoa(int(port)))
		},
		"json": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		"ms": func(p *float64) string {
			if p == nil {
				return "–"
			}
			return strconv.FormatFloat(*p, 'f', 2, 64) + " ms"
		},
		"age":   func(s float64) string { return (time.Duration(s) * time.Second).String() },
		"since": func(t time.Time) string { return time.Since(t).Round(time.Second).String() },
		"routed": func(p *int) string {
			if p == nil {
				return ""
			}
			return strconv.Itoa(*p)
		},
	}).ParseFS(web, "web/*.html"))

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, req *http.Request) { r.render(w, req, tmpl, "page") })
	mux.HandleFunc("GET /ui/main", func(w http.ResponseWriter, req *http.Request) { r.render(w, req, tmpl, "main") })
	files := http.StripPrefix("/static/", http.FileServerFS(static))
	mux.HandleFunc("GET /static/{name}", func(w http.ResponseWriter, req *http.Request) {
		v, ok := versions[req.PathValue("name")]
		if ok && req.URL.Query().Get("v") == v {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		if ok {
			w.Header().Set("ETag", `"`+v+`"`)
		}
		files.ServeHTTP(w, req)
	})
	mux.HandleFunc("GET /api/services", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, r.Services()) })
	mux.HandleFunc("GET /api/instances", func(w http.ResponseWriter, req *http.Request) {
		service := req.URL.Query().Get("service")
		if service != "" {
			if err := events.ValidateService(service); err != nil {
				writeError(w, fmt.Errorf("%w: %w", ErrBadInput, err))
				return
			}
		}
		if region := req.URL.Query().Get("region"); region != "" {
			// Another region's, or every region's (v1.5): discovery's
			// answer, from hail_remote.
			recs, err := r.RegionInstances(req.Context(), region, service)
			if err != nil {
				writeError(w, err)
				return
			}
			writeJSON(w, http.StatusOK, recs)
			return
		}
		writeJSON(w, http.StatusOK, r.Instances(req.Context(), service))
	})
	mux.HandleFunc("GET /api/regions", func(w http.ResponseWriter, req *http.Request) {
		rs, err := r.Regions(req.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, rs)
	})
	mux.HandleFunc("GET /api/nodes", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, r.Nodes()) })
	mux.HandleFunc("GET /api/routes", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, r.Routes()) })
	putRoute := func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxBody))
		if err != nil {
			r.refused.Inc()
			writeError(w, fmt.Errorf("%w: body: %w", ErrBadInput, err))
			return
		}
		service := req.PathValue("service")
		cfg, err := r.SetRoute(req.Context(), service, body)
		if err != nil {
			writeError(w, err)
			return
		}
		ans := routeWritten{RouteConfig: cfg}
		if !r.Registered(service) {
			ans.Warning = fmt.Sprintf("no instance of service %q is registered; the route takes effect when one registers", service)
		}
		writeJSON(w, http.StatusOK, ans)
	}
	mux.HandleFunc("PUT /api/routes/{service}", putRoute)
	mux.HandleFunc("POST /api/routes/{service}", putRoute)
	mux.HandleFunc("DELETE /api/routes/{service}", func(w http.ResponseWriter, req *http.Request) {
		if err := r.DeleteRoute(req.Context(), req.PathValue("service")); err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	drain := func(drained bool) http.HandlerFunc {
		return func(w http.ResponseWriter, req *http.Request) {
			cfg, err := r.Drain(req.Context(), req.PathValue("id"), drained)
			if err != nil {
				writeError(w, err)
				return
			}
			writeJSON(w, http.StatusOK, cfg)
		}
	}
	mux.HandleFunc("POST /api/instances/{id}/drain", drain(true))
	mux.HandleFunc("POST /api/instances/{id}/undrain", drain(false))
	mux.HandleFunc("POST /api/instances/{id}/deregister", deregisterHandler(r))
	mux.HandleFunc("GET /api/timeline", func(w http.ResponseWriter, req *http.Request) {
		q := req.URL.Query()
		evs, err := r.Timeline(req.Context(), q.Get("service"), q.Get("id"), 50)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, evs)
	})
	mux.HandleFunc("GET /api/events", r.stream)
	return g.Wrap(mux)
}

// firstRows is how many services the page's first answer shows: more
// than a 1280x900 window holds, and a third of the rows of a region of
// 100 services, whose first render in Chromium this halves. The page's
// script fetches the rest at once; without script, a link shows all.
const firstRows = 30

// pageData is what the page's templates show.
type pageData struct {
	Services   []ServiceView
	More       int  // services not shown (the first answer shows firstRows)
	All        bool // every service shown, asked for with ?all
	Selected   string
	Instances  []InstanceView
	Route      events.RouteConfig
	HasRoute   bool
	Strategies []string
	Nodes      []NodeView
	Routes     []RouteView
	// Regions are shown when there is more than this one (v1.5).
	Regions []RegionView
	Cols    columns
}

// columns say which of the optional columns hold a value in some row: a
// column empty in every row (no instance with an AZ, say) is left out,
// and the instances table fits 1280 px.
type columns struct {
	Checks, Address, Version, AZ, Node bool // instances
	NodeAZ, NodeHost                   bool // discovery nodes
	Region                             bool // more than one region known
}

func columnsOf(insts []InstanceView, nodes []NodeView) columns {
	var c columns
	for _, v := range insts {
		c.Checks = c.Checks || len(v.Checks) > 0
		c.Address = c.Address || v.Address != "" || len(v.Tags) > 0
		c.Version = c.Version || v.Version != ""
		c.AZ = c.AZ || v.AZ != ""
		c.Node = c.Node || v.Node != ""
	}
	for _, n := range nodes {
		c.NodeAZ = c.NodeAZ || n.AZ != ""
		c.NodeHost = c.NodeHost || n.Hostname != ""
	}
	return c
}

func (r *Region) render(w http.ResponseWriter, req *http.Request, tmpl *template.Template, name string) {
	d := pageData{Selected: req.URL.Query().Get("service"), Strategies: events.Strategies, Nodes: r.Nodes(), Routes: r.Routes(),
		All: req.URL.Query().Has("all")}
	limit := firstRows
	if d.All {
		limit = -1
	}
	var total int
	d.Services, total = r.services(limit)
	d.More = total - len(d.Services)
	if d.Selected == "" && len(d.Services) > 0 {
		d.Selected = d.Services[0].Service
	}
	if d.Selected != "" {
		if err := events.ValidateService(d.Selected); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		d.Instances = r.Instances(req.Context(), d.Selected)
		d.Route, d.HasRoute = r.Route(d.Selected)
	}
	d.Cols = columnsOf(d.Instances, d.Nodes)
	rctx, cancel := context.WithTimeout(req.Context(), regionsWait)
	if rs, err := r.Regions(rctx); err == nil && len(rs) > 1 {
		d.Regions, d.Cols.Region = rs, true
	}
	cancel()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := tmpl.ExecuteTemplate(w, name, d); err != nil {
		r.log.Warn("render admin page", "err", err)
	}
}

// stream sends a server-sent event for every change in the region until
// the client leaves or the server stops.
func (r *Region) stream(w http.ResponseWriter, req *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	changes, stop := r.Subscribe()
	defer stop()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	fmt.Fprint(w, "retry: 1000\n\n")
	flusher.Flush()
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-req.Context().Done():
			return
		case <-r.done:
			return
		case <-keepalive.C:
			fmt.Fprint(w, ": keepalive\n\n")
		case what := <-changes:
			// Changes come in bursts (a router's snapshot in parts,
			// routers publishing together, a wave of registrations): a
			// burst is told once per kind, not once per change.
			kinds := []string{what}
			settle := time.NewTimer(settleFor)
		burst:
			for {
				select {
				case what := <-changes:
					if !slices.Contains(kinds, what) {
						kinds = append(kinds, what)
					}
				case <-settle.C:
					break burst
				case <-req.Context().Done():
					settle.Stop()
					return
				}
			}
			for _, what := range kinds {
				fmt.Fprintf(w, "event: change\ndata: %s\n\n", what)
			}
		}
		flusher.Flush()
	}
}

// settleFor is how long a change waits for the rest of its burst before
// the page is told: the parts of a router's snapshot arrive within
// milliseconds.
const settleFor = 50 * time.Millisecond

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers with the HTTP code the error's kind calls for and
// {"error": "..."} saying what was wrong.
func writeError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrBadInput):
		code = http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrConflict):
		code = http.StatusConflict
	case errors.Is(err, ErrUpstream):
		code = http.StatusBadGateway
	}
	writeJSON(w, code, map[string]any{"error": err.Error(), "code": code})
}

// staticVersions are the first 12 hex digits of each static file's
// SHA-256, by name.
func staticVersions(static fs.FS) map[string]string {
	out := map[string]string{}
	entries, _ := fs.ReadDir(static, ".") // embedded: cannot fail
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		data, err := fs.ReadFile(static, e.Name())
		if err != nil {
			continue
		}
		sum := sha256.Sum256(data)
		out[e.Name()] = hex.EncodeToString(sum[:6])
	}
	return out
}
