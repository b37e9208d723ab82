package grpctest

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/health"
)

// A real grpc-go server with the standard health service: SERVING is
// passing, NOT_SERVING and an unknown service critical, a stopped server
// critical, and one connection serves every probe.
func TestGRPCAgainstGRPCGo(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int32
	counting := &countingListener{Listener: l, n: &accepted}
	srv := grpc.NewServer()
	hs := grpchealth.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	hs.SetServingStatus("greeter", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("billing", healthpb.HealthCheckResponse_NOT_SERVING)
	go func() { _ = srv.Serve(counting) }()
	defer srv.Stop()

	probe := func(p *health.GRPC) health.Result {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return p.Probe(ctx)
	}
	tests := []struct {
		service string
		want    events.Status
		output  string
	}{
		{"", events.Passing, "SERVING"},
		{"greeter", events.Passing, "SERVING"},
		{"billing", events.Critical, "NOT_SERVING"},
		{"nosuch", events.Critical, "grpc status 5"}, // NOT_FOUND
	}
	for _, tt := range tests {
		p := health.NewGRPC(l.Addr().String(), tt.service, false, false)
		for range 3 {
			got := probe(p)
			if got.Status != tt.want || !strings.Contains(got.Output, tt.output) {
				t.Errorf("service %q: %s %q, want %s with %q", tt.service, got.Status, got.Output, tt.want, tt.output)
			}
		}
		p.Close()
	}
	if n := int(accepted.Load()); n != len(tests) {
		t.Errorf("%d connections for %d probes of %d checks; want one per check", n, 3*len(tests), len(tests))
	}
	hs.SetServingStatus("greeter", healthpb.HealthCheckResponse_NOT_SERVING)
	p := health.NewGRPC(l.Addr().String(), "greeter", false, false)
	defer p.Close()
	if got := probe(p); got.Status != events.Critical {
		t.Errorf("after NOT_SERVING: %s %q", got.Status, got.Output)
	}
	srv.Stop()
	if got := probe(p); got.Status != events.Critical {
		t.Errorf("server stopped: %s %q", got.Status, got.Output)
	}
}

type countingListener struct {
	net.Listener
	n *atomic.Int32
}

func (c *countingListener) Accept() (net.Conn, error) {
	conn, err := c.Listener.Accept()
	if err == nil {
		c.n.Add(1)
	}
	return conn, err
}
