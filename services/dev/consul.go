package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"

	"github.com/VictoriaMetrics/metrics"

	"github.com/hailsd/hail/admin"
	"github.com/hailsd/hail/consul"
	"github.com/hailsd/hail/registry"
)

// consulParts are the stack's Consul interfaces and where they listen.
type consulParts struct {
	comps         []*component
	httpAt, dnsAt string
}

// startConsul serves Consul's read API (consul.addr) and DNS (dns.addr)
// from f, the first node's follower. An address that is taken (a Consul
// agent on this machine, say) is warned about, not fatal: the rest of
// the stack is still worth running.
func startConsul(ctx context.Context, cfg *Config, f *registry.Follower, dc string, set *metrics.Set, log *slog.Logger, stopped chan<- error) (consulParts, error) {
	var p consulParts
	if cfg.Consul.Addr == "" && cfg.DNS.Addr == "" {
		return p, nil
	}
	view := consul.NewView(dc)
	p.comps = append(p.comps, start(ctx, func(ctx context.Context) error { return view.Run(ctx, f) }, stopped))
	if cfg.Consul.Addr != "" {
		host, _ := os.Hostname()
		opts, err := cfg.Consul.Options("consul", host)
		if err != nil {
			return p, err
		}
		opts.Metrics = set
		if l, err := admin.Listen(cfg.Consul.Listener); err != nil {
			log.Warn("no Consul HTTP API", "err", err)
		} else {
			p.httpAt = l.Addr().String()
			h := consul.Handler(view, opts)
			p.comps = append(p.comps, start(ctx, func(ctx context.Context) error { return admin.Serve(ctx, l, h, log) }, stopped))
		}
	}
	if cfg.DNS.Addr != "" {
		if pc, l, err := consul.ListenDNS(cfg.DNS.Addr); err != nil {
			log.Warn("no DNS", "err", err)
		} else {
			p.dnsAt = pc.LocalAddr().String()
			d := consul.NewDNS(view, cfg.DNS, set)
			p.comps = append(p.comps, start(ctx, func(ctx context.Context) error { return d.Serve(ctx, pc, l, log) }, stopped))
		}
	}
	return p, nil
}

// print says where Consul's clients find the stack.
func (p consulParts) print(w io.Writer) {
	if p.httpAt != "" {
		fmt.Fprintf(w, "  consul api  http://%[1]s: curl http://%[1]s/v1/health/service/echo · CONSUL_HTTP_ADDR=%[1]s\n", p.httpAt)
	}
	if p.dnsAt != "" {
		host, port, _ := net.SplitHostPort(p.dnsAt)
		fmt.Fprintf(w, "  dns         %s: dig @%s -p %s echo.service.hail SRV\n", p.dnsAt, host, port)
	}
}
