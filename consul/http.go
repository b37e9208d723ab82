package consul

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/VictoriaMetrics/metrics"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/roles"
)

// DefaultMaxBlocking is http.max_blocking's default: the blocking queries
// one agent holds at once.
const DefaultMaxBlocking = 4096

// Leader is what /v1/status/leader answers: Consul clients want a stable,
// non-empty address, and hail has no leader to name.
const Leader = "127.0.0.1:8300"

// HTTPOptions configure Handler.
type HTTPOptions struct {
	// NodeName is the agent's host name, for /v1/agent/self.
	NodeName string
	// Tokens, when set, guard every read: a read (or write) token in
	// X-Consul-Token or Authorization: Bearer. nil: open.
	Tokens *roles.Tokens
	// MaxBlocking bounds the blocking queries waiting at once; beyond it
	// a blocking query is answered 429. Default DefaultMaxBlocking.
	MaxBlocking int
	Metrics     *metrics.Set
}

// handler serves Consul's read API from a View.
type handler struct {
	v       *View
	o       HTTPOptions
	blocked limiter
	refused *metrics.Counter
}

// Handler answers Consul's HTTP read API (PROTOCOL v1.3) from v.
func Handler(v *View, o HTTPOptions) http.Handler {
	if o.MaxBlocking <= 0 {
		o.MaxBlocking = DefaultMaxBlocking
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	h := &handler{v: v, o: o, blocked: limiter{max: int64(o.MaxBlocking)}}
	h.refused = o.Metrics.GetOrCreateCounter("hail_consul_blocking_refused_total")
	o.Metrics.GetOrCreateGauge("hail_consul_blocking_queries", func() float64 { return float64(h.blocked.n.Load()) })
	return h
}

// notServed names the parts of Consul's API hail leaves out, by path
// prefix: each is answered 404 saying so.
var notServed = []struct{ prefix, what string }{
	{"/v1/kv/", "Consul's key/value store"},
	{"/v1/session/", "sessions"},
	{"/v1/connect/", "Connect"},
	{"/v1/agent/connect/", "Connect"},
	{"/v1/acl/", "ACL management"},
	{"/v1/txn", "transactions"},
	{"/v1/event/", "user events"},
	{"/v1/query", "prepared queries"},
	{"/v1/config", "config entries"},
	{"/v1/snapshot", "snapshots"},
	{"/v1/operator/", "operator endpoints"},
	{"/v1/coordinate/", "network coordinates"},
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	for _, n := range notServed {
		if strings.HasPrefix(path, n.prefix) || path == strings.TrimSuffix(n.prefix, "/") {
			httpError(w, http.StatusNotFound, "hail does not serve %s (%s): it answers Consul's catalog, health, agent/self and status/leader reads", n.what, n.prefix)
			return
		}
	}
	read := h.route(path)
	if read == nil {
		httpError(w, http.StatusNotFound, "no such path in hail's Consul API: %s", truncate(path))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		httpError(w, http.StatusMethodNotAllowed, "%s takes GET", truncate(path))
		return
	}
	q, err := parseQuery(r.URL.RawQuery)
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if h.o.Tokens != nil && h.o.Tokens.Scope(requestToken(r)) < roles.ScopeRead {
		httpError(w, http.StatusForbidden, "Permission denied: a read token is needed (X-Consul-Token or Authorization: Bearer)")
		return
	}
	if q.dc != "" && q.dc != h.v.Datacenter() {
		httpError(w, http.StatusInternalServerError, "No path to datacenter")
		return
	}
	select {
	case <-h.v.Ready():
	default:
		httpError(w, http.StatusServiceUnavailable, "the registry is not loaded yet")
		return
	}
	read(w, r, q)
}

// requestToken is the token a request carries, in Consul's header or as
// a bearer token.
func requestToken(r *http.Request) string {
	if t := r.Header.Get("X-Consul-Token"); t != "" {
		return t
	}
	if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	return ""
}

type read func(w http.ResponseWriter, r *http.Request, q query)

// route returns the read that answers path, nil for none.
func (h *handler) route(path string) read {
	switch path {
	case "/v1/catalog/services":
		return h.services
	case "/v1/agent/self":
		return h.self
	case "/v1/status/leader":
		return h.constant(mustJSON(Leader))
	case "/v1/status/peers":
		return h.constant(mustJSON([]string{Leader}))
	case "/v1/catalog/datacenters":
		return func(w http.ResponseWriter, r *http.Request, q query) {
			h.write(w, h.v.serviceList().index, mustJSON([]string{h.v.Datacenter()}))
		}
	}
	for _, p := range perService {
		if name, ok := strings.CutPrefix(path, p.prefix); ok {
			return func(w http.ResponseWriter, r *http.Request, q query) { h.instances(w, r, q, name, p.read) }
		}
	}
	return nil
}

// perService are the reads of one service: each answers an array of its
// instances as pick encodes them.
var perService = []struct {
	prefix string
	read   serviceRead
}{
	{"/v1/catalog/service/", serviceRead{0, false, (*instance).catalogJSON}},
	{"/v1/health/service/", serviceRead{1, true, (*instance).healthJSON}},
	{"/v1/health/checks/", serviceRead{2, true, (*instance).checksJSON}},
}

// serviceRead is one of perService: which cached answer it is, whether
// it follows the health index, and how it encodes an instance.
type serviceRead struct {
	n      int
	health bool
	pick   func(*instance) []byte
}

func (h *handler) constant(body []byte) read {
	return func(w http.ResponseWriter, r *http.Request, q query) { h.write(w, h.v.serviceList().index, body) }
}

func (h *handler) self(w http.ResponseWriter, r *http.Request, q query) {
	body := mustJSON(map[string]any{
		"Config": map[string]string{"Datacenter": h.v.Datacenter(), "NodeName": h.o.NodeName, "Version": events.Version},
		"Member": map[string]any{"Name": h.o.NodeName, "Addr": "127.0.0.1", "Port": 8301, "Status": 1,
			"Tags": map[string]string{"dc": h.v.Datacenter(), "role": "node", "build": events.Version}},
	})
	h.write(w, h.v.serviceList().index, body)
}

// services answers /v1/catalog/services.
func (h *handler) services(w http.ResponseWriter, r *http.Request, q query) {
	l := h.v.serviceList()
	if blocks(q.index, l.index) {
		if !h.blocked.acquire() {
			h.tooMany(w)
			return
		}
		defer h.blocked.release()
		l = await(r.Context(), jittered(q.wait), h.v.serviceList,
			func(l *serviceList) uint64 { return l.index }, func(l *serviceList) <-chan struct{} { return l.changed })
	}
	h.write(w, l.index, l.json)
}

// instances answers one service's catalog or health read.
func (h *handler) instances(w http.ResponseWriter, r *http.Request, q query, name string, rd serviceRead) {
	idx := func(s *service) uint64 { return s.catalogIndex }
	if rd.health {
		idx = func(s *service) uint64 { return s.healthIndex }
	}
	s := h.v.service(name)
	// A name with no instances is not a service, unless a blocking query
	// waits on it: that client saw it, and is told when it is gone.
	if s == nil || (len(s.insts) == 0 && q.index == 0) {
		httpError(w, http.StatusNotFound, "no service %q in the registry", truncate(name))
		return
	}
	if blocks(q.index, idx(s)) {
		if !h.blocked.acquire() {
			h.tooMany(w)
			return
		}
		defer h.blocked.release()
		s = await(r.Context(), jittered(q.wait), func() *service { return h.v.service(name) }, idx,
			func(s *service) <-chan struct{} { return s.changed })
	}
	if !q.passing && len(q.tags) == 0 {
		c := &s.whole[rd.n]
		c.once.Do(func() { c.body = array(s.insts, rd.pick, func(*instance) bool { return true }) })
		h.write(w, idx(s), c.body)
		return
	}
	// Filtered: written as it is read, with no copy of the answer made.
	keep := func(in *instance) bool { return (!q.passing || in.passing) && in.hasTags(q.tags) }
	n := 2
	for _, in := range s.insts {
		if p := rd.pick(in); len(p) > 0 && keep(in) {
			n += len(p) + 1
		}
	}
	if n > 2 {
		n-- // no comma after the last
	}
	h.headers(w, idx(s), n)
	bw := bufio.NewWriterSize(w, 64<<10)
	_ = bw.WriteByte('[')
	first := true
	for _, in := range s.insts {
		if p := rd.pick(in); len(p) > 0 && keep(in) {
			if !first {
				_ = bw.WriteByte(',')
			}
			first = false
			_, _ = bw.Write(p)
		}
	}
	_ = bw.WriteByte(']')
	_ = bw.Flush()
}

// array is the JSON array of the instances keep keeps, each as pick
// encodes it.
func array(insts []*instance, pick func(*instance) []byte, keep func(*instance) bool) []byte {
	n := 2
	for _, in := range insts {
		n += len(pick(in)) + 1
	}
	out := make([]byte, 0, n)
	out = append(out, '[')
	for _, in := range insts {
		if p := pick(in); len(p) > 0 && keep(in) {
			if len(out) > 1 {
				out = append(out, ',')
			}
			out = append(out, p...)
		}
	}
	return append(out, ']')
}

func (h *handler) tooMany(w http.ResponseWriter) {
	h.refused.Inc()
	httpError(w, http.StatusTooManyRequests, "too many blocking queries: %d wait already (http.max_blocking); retry later", h.o.MaxBlocking)
}

// write answers body with Consul's headers.
func (h *handler) write(w http.ResponseWriter, index uint64, body []byte) {
	h.headers(w, index, len(body))
	_, _ = w.Write(body)
}

// headers sets Consul's headers for an answer of size bytes.
func (h *handler) headers(w http.ResponseWriter, index uint64, size int) {
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("X-Consul-Index", strconv.FormatUint(max(index, 1), 10))
	hd.Set("X-Consul-KnownLeader", "true")
	hd.Set("X-Consul-LastContact", "0")
	hd.Set("Content-Length", strconv.Itoa(size))
}

// httpError answers a plain-text error, as Consul does.
func httpError(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintln(w, fmt.Sprintf(format, args...))
}
