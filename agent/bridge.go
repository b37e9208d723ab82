package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/health"
	"github.com/hailsd/hail/httpmap"
)

// DefaultCapacity bounds a service's bridged requests in flight, as the
// SDK bounds an instance's.
const DefaultCapacity = 64

// bridge serves a service's bridge endpoints on NATS and sends each
// request on to the service over HTTP (PROTOCOL v1.1 "The bridge").
type bridge struct {
	s        *service
	base     *url.URL
	client   *http.Client
	timeout  time.Duration
	sem      chan struct{}
	inflight atomic.Int64
	subs     []*nats.Subscription
	calls    sync.WaitGroup
}

func newBridge(s *service) (*bridge, error) {
	cfg := s.cfg.Bridge
	raw := cfg.BaseURL
	if raw == "" {
		host := s.cfg.Address
		if s.cfg.Port > 0 {
			host = net.JoinHostPort(s.cfg.Address, strconv.Itoa(s.cfg.Port))
		} else if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		raw = "http://" + host
	}
	base, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("bridge base_url %q: %s", health.Redact(raw), health.Redact(err.Error()))
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	capacity := s.cfg.capacity()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// A keep-alive pool as large as the requests that may be in flight,
	// so a busy service does not pay a connection per request.
	tr.MaxIdleConns = capacity
	tr.MaxIdleConnsPerHost = capacity
	tr.MaxConnsPerHost = capacity
	tr.ResponseHeaderTimeout = timeout
	return &bridge{
		s: s, base: base, timeout: timeout, sem: make(chan struct{}, capacity),
		client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}, nil
}

// serve subscribes every endpoint: the instance's own subject and the
// service's queue group.
func (b *bridge) serve(nc *nats.Conn) error {
	subj := b.s.a.cfg.Subjects
	for _, ep := range b.s.cfg.Bridge.Endpoints {
		h := b.handler(ep)
		inst := subj.InstOf(b.s.cfg.Name, b.s.id, ep.Name, b.s.scoped)
		sub, err := nc.Subscribe(inst, h)
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", inst, err)
		}
		b.subs = append(b.subs, sub)
		qsub, err := nc.QueueSubscribe(subj.Svc(b.s.cfg.Name, ep.Name), subj.QueueGroup(b.s.cfg.Name), h)
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", subj.Svc(b.s.cfg.Name, ep.Name), err)
		}
		b.subs = append(b.subs, qsub)
	}
	return nil
}

// handler takes a request on the NATS callback: it waits for room under
// the capacity (back-pressure, as the SDK does) and runs the HTTP call on
// its own goroutine.
func (b *bridge) handler(ep BridgeEndpoint) nats.MsgHandler {
	return func(m *nats.Msg) {
		b.sem <- struct{}{}
		b.inflight.Add(1)
		b.calls.Add(1)
		go func() {
			defer func() {
				b.inflight.Add(-1)
				<-b.sem
				b.calls.Done()
			}()
			out := b.do(ep, m)
			if m.Reply != "" {
				out.Header.Set(events.HeaderInstance, b.s.id)
				_ = m.RespondMsg(out)
			}
		}()
	}
}

// do makes the HTTP request for m and returns the reply.
func (b *bridge) do(ep BridgeEndpoint, m *nats.Msg) *nats.Msg {
	method := ep.Method
	if method == "" {
		method = httpmap.Get(m.Header, httpmap.HeaderMethod)
	}
	if method == "" {
		method = http.MethodGet
		if len(m.Data) > 0 {
			method = http.MethodPost
		}
	}
	target := *b.base
	path := ep.Path
	if path == "*" {
		path = httpmap.Get(m.Header, httpmap.HeaderPath)
		if path == "" {
			path = "/"
		}
		if !strings.HasPrefix(path, "/") || strings.HasPrefix(path, "//") {
			return failure(http.StatusBadRequest, fmt.Sprintf("Hail-Path %q must begin with a single /", path))
		}
	}
	// The escaped path and query as received replace base_url's; nothing
	// else of it (no request may reach another host).
	p, q, _ := strings.Cut(path, "?")
	u, err := url.Parse(p)
	if err != nil || u.Host != "" || u.Scheme != "" {
		return failure(http.StatusBadRequest, fmt.Sprintf("Hail-Path %q is not a path", path))
	}
	target.Path, target.RawPath, target.RawQuery = u.Path, u.RawPath, q
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, target.String(), bytes.NewReader(m.Data))
	if err != nil {
		return failure(http.StatusBadRequest, health.Redact(fmt.Sprintf("request: %v", err)))
	}
	req.Header = httpmap.BridgeHeaders(m.Header)
	resp, err := b.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return failure(http.StatusGatewayTimeout, fmt.Sprintf("%s %s: no answer within %v", method, target.Path, b.timeout))
		}
		return failure(http.StatusBadGateway, health.Redact(fmt.Sprintf("%s %s: %v", method, target.Path, err)))
	}
	defer resp.Body.Close()
	limit := int(b.s.a.nc.MaxPayload()) - 8<<10 // room for the headers
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if err != nil {
		return failure(http.StatusBadGateway, health.Redact(fmt.Sprintf("%s %s: read response: %v", method, target.Path, err)))
	}
	if len(body) > limit {
		return failure(http.StatusBadGateway, fmt.Sprintf("%s %s: response over %d bytes does not fit one NATS message", method, target.Path, limit))
	}
	out := &nats.Msg{Header: httpmap.ReplyHeaders(resp.Header, resp.StatusCode), Data: body}
	if resp.StatusCode >= 400 {
		out.Header.Set(events.HeaderServiceErrorCode, strconv.Itoa(resp.StatusCode))
		out.Header.Set(events.HeaderServiceError, http.StatusText(resp.StatusCode))
	}
	return out
}

// failure is the bridge's own error reply, with its status as Hail-Status.
func failure(code int, text string) *nats.Msg {
	m := events.ErrorMsg(code, text)
	m.Header.Set(httpmap.HeaderStatus, strconv.Itoa(code))
	return m
}

// stop takes no more requests and waits (until ctx ends) for those in
// flight.
func (b *bridge) stop(ctx context.Context) {
	for _, sub := range b.subs {
		_ = sub.Unsubscribe()
	}
	done := make(chan struct{})
	go func() {
		b.calls.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	b.client.CloseIdleConnections()
}
