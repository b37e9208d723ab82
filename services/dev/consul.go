package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/VictoriaMetrics/metrics"

	"github.com/hailsd/hail/admin"
	"github.com/hailsd/hail/consul"
	"github.com/hailsd/hail/registry"
)

// consulParts are the stack's Consul interfaces and where they listen.
type consulParts struct {
	comps         []*component
	httpAt, dnsAt string
	domain        string // DNS's, without the root's dot
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
			p.domain = strings.TrimSuffix(cfg.DNS.Domain, ".")
			d := consul.NewDNS(view, cfg.DNS, set)
			p.comps = append(p.comps, start(ctx, func(ctx context.Context) error { return d.Serve(ctx, pc, l, log) }, stopped))
		}
	}
	return p, nil
}

// print says where Consul's clients find the stack, with examples that
// show an instance: the greeter's when it runs. The echo instances speak
// NATS only: the API lists them with no address and DNS, which answers
// only instances with one, answers nothing for them.
func (p consulParts) print(w io.Writer, greeter bool) {
	if p.httpAt != "" {
		svc := "echo"
		if greeter {
			svc = "greeter"
		}
		fmt.Fprintf(w, "  consul api  http://%[1]s: curl http://%[1]s/v1/health/service/%[2]s · CONSUL_HTTP_ADDR=%[1]s\n", p.httpAt, svc)
	}
	if p.dnsAt != "" {
		host, port, _ := net.SplitHostPort(p.dnsAt)
		if greeter {
			fmt.Fprintf(w, "  dns         %s: dig @%s -p %s greeter.service.%s SRV\n", p.dnsAt, host, port, p.domain)
		} else {
			fmt.Fprintf(w, "  dns         %s: dig @%s -p %s <service>.service.%s SRV (instances with an address: echo's have none)\n", p.dnsAt, host, port, p.domain)
		}
	}
}
