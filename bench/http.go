package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"

	"github.com/hailsd/hail/agent"
	"github.com/hailsd/hail/bus"
)

// HTTP paths, in the order they are measured: a tuned reverse proxy in
// front of an HTTP service (the yardstick), the router's ingress to the
// same service through an agent's bridge, and the ingress to an SDK
// instance.
const (
	PathProxy  = "HTTP → reverse proxy → HTTP service"
	PathBridge = "HTTP → ingress → NATS → agent (bridge) → HTTP service"
	PathSDK    = "HTTP → ingress → NATS → SDK instance"
)

// HTTPPaths lists every HTTP path.
var HTTPPaths = []string{PathProxy, PathBridge, PathSDK}

// RunHTTP measures the HTTP paths side by side in one process: a region
// (embedded NATS, a discovery node, a router with its ingress, one SDK
// echo instance), an HTTP service that echoes the body, a reverse proxy
// in front of it and an agent bridging it. Each path gets Warmup, then
// Duration in Rounds turns taken in rotation.
func RunHTTP(ctx context.Context, cfg Config) ([]Result, error) {
	cfg.setDefaults()
	cfg.Instances = 1 // one SDK instance, as one agent bridges one service
	s, err := Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	backend, err := s.serve(http.HandlerFunc(echoBody))
	if err != nil {
		return nil, err
	}
	target, err := url.Parse("http://" + backend)
	if err != nil {
		return nil, err
	}
	// A keep-alive pool as large as the bridge's (its capacity): with the
	// default transport's 2 idle connections per host, the proxy churns
	// connections under this load and measures far below itself.
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = &http.Transport{MaxIdleConns: agentCapacity, MaxIdleConnsPerHost: agentCapacity, IdleConnTimeout: 90 * time.Second}
	proxyAt, err := s.serve(proxy)
	if err != nil {
		return nil, err
	}
	ingressAt, err := s.serve(s.router.Ingress())
	if err != nil {
		return nil, err
	}
	if err := s.bridge(ctx, backend); err != nil {
		return nil, err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: cfg.Concurrency, MaxIdleConnsPerHost: cfg.Concurrency}}
	defer client.CloseIdleConnections()
	payload := bytes.Repeat([]byte("x"), cfg.Payload)
	urls := map[string]string{
		PathProxy:  "http://" + proxyAt + "/echo",
		PathBridge: "http://" + ingressAt + "/web/echo",
		PathSDK:    "http://" + ingressAt + "/echo/say",
	}
	do := func(path string) func(context.Context) error {
		return func(ctx context.Context) error { return post(ctx, client, urls[path], payload) }
	}
	// The bridged service and the SDK instance are routable once
	// discovery has them and the router's table has caught up.
	deadline := time.Now().Add(30 * time.Second)
	for _, path := range HTTPPaths {
		for err := do(path)(ctx); err != nil; err = do(path)(ctx) {
			if time.Now().After(deadline) || ctx.Err() != nil {
				return nil, fmt.Errorf("%s: not answering within 30s: %w", path, err)
			}
			time.Sleep(50 * time.Millisecond) // poll until routable
		}
	}
	for _, path := range HTTPPaths {
		if err := load(ctx, cfg.Concurrency, do(path), cfg.Warmup, 0, &tally{}); err != nil {
			return nil, fmt.Errorf("warm up %s: %w", path, err)
		}
	}
	tallies := make([]tally, len(HTTPPaths))
	for range cfg.Rounds {
		for i, path := range HTTPPaths {
			if err := load(ctx, cfg.Concurrency, do(path), cfg.Duration/time.Duration(cfg.Rounds), 0, &tallies[i]); err != nil {
				return nil, fmt.Errorf("measure %s: %w", path, err)
			}
		}
	}
	out := make([]Result, len(HTTPPaths))
	for i, path := range HTTPPaths {
		if out[i], err = tallies[i].result(path); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// agentCapacity is the bridged service's capacity: its HTTP client's
// keep-alive pool and its bound on requests in flight.
const agentCapacity = 64

// bridge runs an agent that registers the HTTP service at addr as "web"
// with one bridged endpoint, echo: POST /echo.
func (s *Stack) bridge(ctx context.Context, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return err
	}
	nc, err := bus.Connect(ctx, bus.ConnectOptions{URL: s.url, Name: "bench-agent"})
	if err != nil {
		return fmt.Errorf("connect bench-agent: %w", err)
	}
	s.stop = append(s.stop, nc.Close)
	a := agent.New(nc, agent.Config{Logger: s.cfg.Logger})
	svc := agent.ServiceConfig{
		Name: "web", Address: host, Port: p, Capacity: agentCapacity,
		Bridge: agent.BridgeConfig{Endpoints: []agent.BridgeEndpoint{{Name: "echo", Method: http.MethodPost, Path: "/echo"}}},
		Checks: []agent.CheckConfig{{Name: "port", TCP: addr, Interval: time.Second, Timeout: 500 * time.Millisecond}},
	}
	if err := agent.ValidateServices([]agent.ServiceConfig{svc}); err != nil {
		return err
	}
	s.run(func(ctx context.Context) error { return a.Run(ctx, []agent.ServiceConfig{svc}) })
	return nil
}

// serve serves h on a free loopback port until Close and returns the
// address.
func (s *Stack) serve(h http.Handler) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	s.stop = append(s.stop, func() { _ = srv.Close(); <-done })
	return l.Addr().String(), nil
}

// echoBody is the HTTP service: the request's body back.
func echoBody(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(body)
}

// post sends payload and wants it back with a 200.
func post(ctx context.Context, c *http.Client, url string, payload []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, body)
	}
	if !bytes.Equal(body, payload) {
		return errors.New("answer is not the payload")
	}
	return nil
}

// WriteHTTP prints HTTP results as a Markdown table with each path's
// ratio to the reverse proxy.
func WriteHTTP(w io.Writer, cfg Config, results []Result) {
	cfg.setDefaults()
	fmt.Fprintf(w, "%d requests in flight, %d-byte bodies, %d turns of %s per path in rotation\n\n",
		cfg.Concurrency, cfg.Payload, cfg.Rounds, cfg.Duration/time.Duration(cfg.Rounds))
	fmt.Fprintln(w, "| path | req/s | × reverse proxy | p50 | p99 | errors |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
	var base float64
	for _, r := range results {
		if r.Mode == PathProxy {
			base = r.Throughput
		}
	}
	for _, r := range results {
		ratio := "-"
		if base > 0 {
			ratio = fmt.Sprintf("%.2f", r.Throughput/base)
		}
		fmt.Fprintf(w, "| %s | %.0f | %s | %.1f ms | %.1f ms | %d |\n", r.Mode, r.Throughput, ratio,
			float64(r.P50.Microseconds())/1000, float64(r.P99.Microseconds())/1000, r.Errors)
	}
}
