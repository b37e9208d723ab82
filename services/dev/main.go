// Command dev runs a whole hail stack in one process: an embedded NATS
// server with JetStream, a discovery node, a router and echo instances.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/hailsd/hail/admin"
	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/embedded"
	"github.com/hailsd/hail/config"
	"github.com/hailsd/hail/console"
	"github.com/hailsd/hail/consul"
	"github.com/hailsd/hail/credentials"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/echo"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/instance"
	"github.com/hailsd/hail/program"
	"github.com/hailsd/hail/roles"
	"github.com/hailsd/hail/router"
	"github.com/nats-io/nats.go"
)

func main() { program.Main(run) }

// Config is the dev stack's configuration.
type Config struct {
	// NATS.URL is where the embedded server listens. Default nats://127.0.0.1:4222.
	NATS config.NATS `koanf:"nats"`
	// StoreDir keeps JetStream data across runs; empty uses a temporary
	// directory removed on exit. Default empty.
	StoreDir string `koanf:"store_dir"`
	// Echo is how many echo instances to run. Default 3.
	Echo int `koanf:"echo"`
	// Discovery is how many discovery nodes to run. Default 1.
	Discovery int `koanf:"discovery"`
	// HTTP.Addr serves the discovery node's /metrics, /healthz and /readyz;
	// empty serves none. Default 127.0.0.1:8080.
	HTTP config.HTTP `koanf:"http"`
	// Ingress is the router's HTTP ingress. Default 127.0.0.1:8000;
	// empty: off.
	Ingress config.Listener `koanf:"ingress"`
	// Greeter is the example HTTP service the dev stack runs behind an
	// agent (which checks its /health).
	Greeter GreeterConfig `koanf:"greeter"`
	// Secure runs the stack as a secured region: TLS, and each part
	// connected as its own NATS user with least privilege (the roles of
	// `services/nats secure init`, whose files it keeps in
	// <store_dir>/secure). Default false: open, on loopback.
	Secure bool `koanf:"secure"`
	// Consul serves Consul's read API (PROTOCOL v1.3) from the registry.
	// Default 127.0.0.1:8500; empty: off.
	Consul consul.HTTPConfig `koanf:"consul"`
	// DNS answers Consul-style names. Default 127.0.0.1:8600.
	DNS consul.DNSConfig `koanf:"dns"`
	// Regions (--regions eu,us) runs these regions in one process,
	// joined by leafnodes (PROTOCOL v1.5): the first on nats.url's port,
	// each next one on the port after. Default none: one region.
	Regions       []string `koanf:"regions"`
	config.Logged `koanf:",squash"`
}

// GreeterConfig places the example HTTP service.
type GreeterConfig struct {
	// Addr it listens on; empty runs no greeter and no agent. Default
	// 127.0.0.1:8090.
	Addr string `koanf:"addr"`
}

func defaults() *Config {
	return &Config{NATS: config.NATS{URL: config.DefaultNATSURL}, Echo: 3, Discovery: 1, HTTP: config.HTTP{Listener: config.Listener{Addr: "127.0.0.1:8080"}},
		Ingress: config.Listener{Addr: "127.0.0.1:8000"}, Greeter: GreeterConfig{Addr: "127.0.0.1:8090"}, Logged: config.Logged{Log: config.DefaultLog},
		Consul: consul.HTTPConfig{Listener: config.Listener{Addr: "127.0.0.1:8500"}, MaxBlocking: consul.DefaultMaxBlocking}, DNS: consul.DefaultDNS()}
}

// Validate names every wrong field.
func (c *Config) Validate() error {
	errs := []error{c.NATS.Validate(), c.Log.Validate(), c.Consul.Validate("consul"), c.DNS.Validate()}
	if c.Echo < 0 || c.Echo > 1000 {
		errs = append(errs, config.FieldError("echo", "%d is out of range 0..1000", c.Echo))
	}
	if c.Discovery < 1 || c.Discovery > 9 {
		errs = append(errs, config.FieldError("discovery", "%d is out of range 1..9", c.Discovery))
	}
	errs = append(errs, c.validateRegions()...)
	return errors.Join(errs...)
}

func run(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	cfg := defaults()
	loaded, err := config.Start(cfg, "dev", args, getenv, out)
	if loaded == nil || err != nil {
		return err
	}
	log := loaded.Log
	hostport, err := cfg.NATS.HostPort()
	if err != nil {
		return err
	}
	host, portText, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("nats.url: %w", err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return fmt.Errorf("nats.url: port %q: %w", portText, err)
	}
	storeDir := cfg.StoreDir
	if storeDir == "" {
		if storeDir, err = os.MkdirTemp("", "hail-dev-"); err != nil {
			return fmt.Errorf("make store dir: %w", err)
		}
		defer os.RemoveAll(storeDir)
	}
	if len(cfg.Regions) > 0 {
		return runRegions(ctx, cfg, port, storeDir, log, out)
	}

	so := embedded.ServerOptions{Name: "hail-dev", Host: host, Port: port, StoreDir: storeDir}
	var creds *credentials.Dir
	if cfg.Secure {
		if creds, err = secureDir(filepath.Join(storeDir, "secure"), host); err != nil {
			return err
		}
		sec := embedded.Security{Cert: creds.File(credentials.ServerCertFile), Key: creds.File(credentials.ServerKeyFile), AuthFile: creds.File(credentials.AuthConfFile)}
		if so.Configure, err = sec.Configure(); err != nil {
			return err
		}
	}
	srv, err := embedded.StartServer(so)
	if err != nil {
		return fmt.Errorf("embedded NATS at %s: %w", hostport, err)
	}
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}()
	url := srv.ClientURL()
	dial := dialer{url: url, creds: creds, log: log}

	// Discovery nodes and the router outlive the echo instances, so that
	// the instances' deregistrations are recorded and their exit routed
	// around before those stop.
	set := metrics.NewSet()
	stopped := make(chan error, 1)
	// Every part of the stack is a component, stopped in reverse order of
	// start, and every connection drains only after all have stopped.
	var comps []*component
	var conns []*nats.Conn
	defer func() {
		for i := len(comps) - 1; i >= 0; i-- {
			_ = comps[i].stop()
		}
		for i := len(conns) - 1; i >= 0; i-- {
			bus.Drain(conns[i], 5*time.Second)
		}
	}()
	if loaded.File != "" { // without a file there is nothing to follow
		comps = append(comps, start(ctx, func(ctx context.Context) error {
			config.Watch[*Config]{Fresh: defaults, Metrics: set}.Run(ctx, loaded, cfg)
			return nil
		}, stopped))
	}
	var nodes []*discovery.Node
	var kv *bus.Buckets
	for i := range cfg.Discovery {
		nc, err := dial.connect(ctx, fmt.Sprintf("hail-discovery-%d", i+1), "discovery")
		if err != nil {
			return err
		}
		conns = append(conns, nc)
		if kv, err = bus.EnsureBuckets(ctx, nc, bus.BucketOptions{}); err != nil {
			return err
		}
		nodeSet := set // the first node's metrics are served; the others' kept apart
		if i > 0 {
			nodeSet = metrics.NewSet()
		}
		node, err := discovery.New(nc, kv, discovery.Config{Logger: log, Metrics: nodeSet})
		if err != nil {
			return err
		}
		c := start(ctx, node.Run, stopped)
		comps = append(comps, c)
		if err := c.wait(ctx, node.Serving(), "discovery node"); err != nil {
			return err
		}
		nodes = append(nodes, node)
	}

	rnc, err := dial.connect(ctx, "hail-router", "router")
	if err != nil {
		return err
	}
	conns = append(conns, rnc)
	rt, err := router.New(rnc, router.Config{Table: router.TableConfig{Logger: log, Metrics: set}})
	if err != nil {
		return err
	}
	rc := start(ctx, rt.Run, stopped)
	comps = append(comps, rc)
	consoleAt := ""
	if cfg.HTTP.Addr != "" {
		// The console has its own connection (and user), and reads the
		// first node's registry: one follower of hail_instances for the
		// page and that node.
		cnc, err := dial.connect(ctx, "hail-console", "console")
		if err != nil {
			return err
		}
		conns = append(conns, cnc)
		ckv, err := bus.OpenBuckets(ctx, cnc, log)
		if err != nil {
			return err
		}
		region := console.NewRegion(cnc, ckv, console.RegionConfig{Logger: log, Metrics: set, Registry: nodes[0].Registry(), Nodes: nodes[0].Nodes()})
		probe, err := bus.NewProbe(cnc, 2*time.Second)
		if err != nil {
			return err
		}
		// The guard of a discovery node's console: without tokens (origin,
		// content type, Host and headers checked all the same), or behind
		// the tokens of `secure init` (console.tokens) with --secure.
		var guard console.Guard
		if creds != nil {
			if guard.Tokens, err = roles.LoadTokens(creds.File(credentials.ConsoleTokensFile)); err != nil {
				return err
			}
		}
		if l, err := admin.Listen(cfg.HTTP.Listener); err != nil {
			log.Warn("no HTTP endpoints", "err", err)
		} else {
			consoleAt = l.Addr().String()
			ready := func() bool { return nodes[0].Ready() && rt.Ready() && probe.Reachable() }
			h := admin.Handler(set, ready, region.Handler(guard), admin.Profiles(cfg.HTTP.Pprof))
			comps = append(comps, start(ctx, region.Run, stopped), start(ctx, probe.Run, stopped),
				start(ctx, func(ctx context.Context) error { return admin.Serve(ctx, l, h, log) }, stopped))
		}
	}
	if err := rc.wait(ctx, rt.Serving(), "router"); err != nil {
		return err
	}
	cp, err := startConsul(ctx, cfg, nodes[0].Registry(), consul.Datacenter(rnc), set, log, stopped)
	comps = append(comps, cp.comps...)
	if err != nil {
		return err
	}
	ingressAt := ""
	if cfg.Ingress.Addr != "" {
		il, err := admin.Listen(cfg.Ingress)
		if err != nil {
			return fmt.Errorf("ingress.addr: %w", err)
		}
		ingressAt = il.Addr().String()
		h := rt.Ingress()
		comps = append(comps, start(ctx, func(ctx context.Context) error { return admin.Serve(ctx, il, h, log) }, stopped))
	}

	greeterAt := ""
	if cfg.Greeter.Addr != "" {
		addr, err := startGreeter(ctx, cfg.Greeter.Addr, dial, set, log, stopped)
		if err != nil {
			return err
		}
		comps = append(comps, addr.comps...)
		conns = append(conns, addr.nc)
		greeterAt = addr.at
	}

	var insts []*instance.Instance
	for i := range cfg.Echo {
		enc, err := dial.connect(ctx, fmt.Sprintf("hail-echo-%d", i+1), "svc-echo")
		if err != nil {
			return err
		}
		conns = append(conns, enc)
		inst, err := echo.Start(ctx, enc, instance.Config{Service: "echo", Version: "1.0.0", AZ: fmt.Sprintf("dev-%c", 'a'+i%3), Scoped: cfg.Secure, Logger: log, Metrics: set})
		if err != nil {
			return err
		}
		insts = append(insts, inst)
	}
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i] = n.ID()
	}
	printWelcome(out, url, storeDir, ids, len(insts), consoleAt, greeterAt, ingressAt)
	cp.print(out, greeterAt != "")
	if creds != nil {
		printSecured(out, url, consoleAt, creds)
	} else {
		printTry(out, url)
	}
	fmt.Fprint(out, "Tasks (the pinned nats CLI among them): go -C tools tool task --list\nCtrl-C stops everything.\n\n")

	var failed error
	select {
	case <-ctx.Done():
	case err := <-stopped:
		failed = fmt.Errorf("a part of the stack stopped on its own: %w", err)
	}
	fmt.Fprintln(out, "stopping hail dev stack")
	for _, inst := range insts {
		if err := inst.Shutdown(context.WithoutCancel(ctx)); err != nil {
			log.Warn("echo shutdown", "instance_id", inst.ID(), "err", err)
		}
	}
	errs := []error{failed}
	for i := len(comps) - 1; i >= 0; i-- {
		errs = append(errs, comps[i].stop())
	}
	comps = nil
	return errors.Join(errs...)
}

// component is a part of the stack running until stopped.
type component struct {
	cancel context.CancelFunc
	ended  chan struct{}
	err    error // set before ended is closed
}

// start runs f on a context of its own (the stack stops its parts in
// order, not all at once when ctx ends); if f returns by itself, its
// error is sent on stopped.
func start(ctx context.Context, f func(context.Context) error, stopped chan<- error) *component {
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &component{cancel: cancel, ended: make(chan struct{})}
	go func() {
		c.err = f(cctx)
		close(c.ended)
		if cctx.Err() == nil {
			select {
			case stopped <- c.err:
			default:
			}
		}
	}()
	return c
}

// wait waits until ready is closed, the component ends, or ctx ends.
func (c *component) wait(ctx context.Context, ready <-chan struct{}, what string) error {
	select {
	case <-ready:
		return nil
	case <-c.ended:
		return fmt.Errorf("%s stopped before it was ready: %w", what, c.err)
	case <-ctx.Done():
		return nil
	}
}

// stop ends the component and returns what it returned; safe twice.
func (c *component) stop() error {
	c.cancel()
	<-c.ended
	return c.err
}

func printWelcome(w io.Writer, url, storeDir string, nodeIDs []string, echoes int, httpAddr, greeterAt, ingressAt string) {
	fmt.Fprintf(w, `
hail dev stack is up
  NATS        %s (JetStream data in %s)
  discovery   %d node(s): %s
  router      %s
  echo        %d instances of service "echo"
`, url, storeDir, len(nodeIDs), strings.Join(nodeIDs, ", "), events.Subjects{}.RouteAll(), echoes)
	if greeterAt != "" {
		fmt.Fprintf(w, "  greeter     an HTTP service at http://%s (/hello), registered by an agent that checks its /health and bridges it\n", greeterAt)
	}
	if ingressAt != "" {
		fmt.Fprintf(w, "  ingress     http://%[1]s/<service>/<endpoint>: curl http://%[1]s/greeter/hello · curl http://%[1]s/echo/say -d hi\n", ingressAt)
	}
	if httpAddr != "" {
		fmt.Fprintf(w, "  console     http://%s/ (its API under /api/, metrics at /metrics)\n", httpAddr)
	}
}

// printTry shows an open stack's subjects and buckets through the nats
// CLI.
func printTry(w io.Writer, url string) {
	s := ""
	if url != config.DefaultNATSURL {
		s = " -s " + url
	}
	fmt.Fprintf(w, `
Try, with the nats CLI:
  nats%[1]s kv ls %[2]s
  nats%[1]s kv get %[2]s echo.<id> --raw
  nats%[1]s kv watch %[2]s
  nats%[1]s request %[7]s hi
  nats%[1]s kv put %[8]s %[9]s '{"strategy":"round_robin"}'
  nats%[1]s request %[3]s hi
  nats%[1]s request %[4]s '{}'
  nats%[1]s request %[5]s '{"service":"echo"}'
  nats%[1]s sub '%[6]s'
  nats%[1]s micro ls
  nats%[1]s request %[5]s '{"service":"greeter"}'    # address, port, tags, checks
`, s, bus.InstancesBucket, events.Subjects{}.Svc("echo", "say"), events.Subjects{}.DiscoveryServices(),
		events.Subjects{}.DiscoveryInstances(), events.Subjects{}.HealthAll(), events.Subjects{}.Route("echo", "say"),
		bus.ConfigBucket, events.RouteConfigKey("echo"))
}
