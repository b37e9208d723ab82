package router

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/httpmap"
)

// Ingress is the router's HTTP side (PROTOCOL v1.1 "HTTP ingress"):
// <METHOD> /<service>/<endpoint>[/<rest>][?<query>] is routed exactly like
// a request on P.route.<service>.<endpoint>, through the same forwarder
// (table, strategy, retries, budget, ejection, metrics), with the method
// in Hail-Method, /<rest>?<query> in Hail-Path, the body as the payload
// and the headers (less hop-by-hop ones and any Nats-*) as NATS headers.
// The answer's status is its Hail-Status, else its
// Nats-Service-Error-Code, else 200. A client that goes away cancels the
// call: no retry, and its slot is free at once.
func (r *Router) Ingress() http.Handler {
	return http.HandlerFunc(r.serveIngress)
}

func (r *Router) serveIngress(w http.ResponseWriter, req *http.Request) {
	code := r.ingress(w, req)
	r.table.m.set.GetOrCreateCounter(fmt.Sprintf(`hail_router_ingress_requests_total{code="%d"}`, code)).Inc()
}

// ingress serves one request and returns the status it answered.
func (r *Router) ingress(w http.ResponseWriter, req *http.Request) int {
	service, endpoint, rest, ok := splitIngressPath(req.URL.EscapedPath())
	if !ok {
		return ingressError(w, events.CodeNotFound, "want /<service>/<endpoint>[/<path>]")
	}
	if err := events.ValidateService(service); err != nil {
		return ingressError(w, events.CodeBadRequest, err.Error())
	}
	if err := events.ValidateEndpoint(endpoint); err != nil {
		return ingressError(w, events.CodeBadRequest, err.Error())
	}
	if !r.Ready() {
		return ingressError(w, events.CodeUnavailable, "router not ready")
	}
	if req.URL.RawQuery != "" {
		rest += "?" + req.URL.RawQuery
	}
	limit := r.nc.MaxPayload()
	body, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
	if err != nil {
		return ingressError(w, events.CodeBadRequest, fmt.Sprintf("read body: %v", err))
	}
	hdr := httpmap.IngressHeaders(req.Header)
	hdr.Set(httpmap.HeaderMethod, req.Method)
	hdr.Set(httpmap.HeaderPath, rest)
	if size := int64(len(body) + headerSize(hdr)); size > limit {
		return ingressError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request of %d bytes with its headers exceeds the NATS server's max payload of %d", size, limit))
	}
	type answer struct {
		m   *nats.Msg
		err error
	}
	ch := make(chan answer, 1)
	cancel := r.fwd.Forward(service, endpoint, &nats.Msg{Header: hdr, Data: body}, timeDeadline(req), func(m *nats.Msg, err error) { ch <- answer{m, err} })
	var a answer
	select {
	case a = <-ch:
	case <-req.Context().Done():
		cancel()   // the client went away: so does the call
		return 499 // (nginx's code, for the metric)
	}
	if a.err != nil {
		var rerr *Error
		if errors.As(a.err, &rerr) {
			return ingressError(w, rerr.Code, rerr.Message)
		}
		return ingressError(w, events.CodeInternal, a.err.Error())
	}
	status := httpmap.Status(a.m)
	h := w.Header()
	for k, vs := range httpmap.ResponseHeaders(a.m.Header) {
		h[k] = vs
	}
	h.Set(events.HeaderRouter, r.id)
	h.Set("Content-Length", strconv.Itoa(len(a.m.Data)))
	w.WriteHeader(status)
	_, _ = w.Write(a.m.Data)
	return status
}

// splitIngressPath splits /<service>/<endpoint>[/<rest>] (the escaped
// path); rest is "/" when absent.
func splitIngressPath(p string) (service, endpoint, rest string, ok bool) {
	parts := strings.SplitN(strings.TrimPrefix(p, "/"), "/", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return "", "", "", false
	}
	rest = "/"
	if len(parts) == 3 {
		rest += parts[2]
	}
	return parts[0], parts[1], rest, true
}

func headerSize(h nats.Header) int {
	n := len("NATS/1.0\r\n\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

func ingressError(w http.ResponseWriter, code int, text string) int {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(events.ErrorBody{Error: text, Code: code})
	return code
}

// timeDeadline is the request's deadline, if its context has one.
func timeDeadline(req *http.Request) (t time.Time) {
	t, _ = req.Context().Deadline()
	return t
}
