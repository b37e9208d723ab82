package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/admin"
	"github.com/hailsd/hail/agent"
	"github.com/hailsd/hail/greeter"
)

// greeterParts are the greeter's server and its agent, as components of
// the stack, and the agent's connection.
type greeterParts struct {
	comps []*component
	nc    *nats.Conn
	at    string
}

// startGreeter runs the example HTTP service on addr and an agent that
// registers it as service "greeter" with an HTTP check of its /health
// every second (the way a service beside the bus joins hail).
func startGreeter(ctx context.Context, addr string, dial dialer, set *metrics.Set, log *slog.Logger, stopped chan<- error) (greeterParts, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return greeterParts{}, fmt.Errorf("greeter.addr: %w", err)
	}
	host, portText, _ := net.SplitHostPort(l.Addr().String())
	port, _ := strconv.Atoi(portText)
	// admin.Serve, as every server hail starts: a slow client's headers
	// and body are cut, and it stops with ctx.
	serve := start(ctx, func(ctx context.Context) error {
		return admin.Serve(ctx, l, (&greeter.Server{}).Handler(), log.With("component", "greeter"))
	}, stopped)
	nc, err := dial.connect(ctx, "hail-agent", "svc-greeter")
	if err != nil {
		_ = serve.stop()
		return greeterParts{}, err
	}
	a := agent.New(nc, agent.Config{Logger: log, Metrics: set})
	svc := agent.ServiceConfig{
		Name: "greeter", Address: host, Port: port, Version: "1.0.0", Tags: []string{"dev", "http"}, Scoped: dial.creds != nil,
		Metadata: map[string]string{"example": "true"},
		// Bridged: hello on NATS (and so through the router and its
		// ingress) is GET /hello; http passes any method and path.
		Bridge: agent.BridgeConfig{Endpoints: []agent.BridgeEndpoint{{Name: "hello", Method: http.MethodGet, Path: "/hello"}, {Name: "http", Path: "*"}}},
		Checks: []agent.CheckConfig{{Name: "health", HTTP: "http://" + l.Addr().String() + "/health", Interval: time.Second, Timeout: 500 * time.Millisecond}},
	}
	run := start(ctx, func(ctx context.Context) error { return a.Run(ctx, []agent.ServiceConfig{svc}) }, stopped)
	return greeterParts{comps: []*component{serve, run}, nc: nc, at: l.Addr().String()}, nil
}
