// Command discovery runs a hail discovery node.
package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/hailsd/hail/admin"
	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/config"
	"github.com/hailsd/hail/console"
	"github.com/hailsd/hail/consul"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/program"
	"github.com/hailsd/hail/roles"
	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"
)

func main() { program.Main(run) }

// Config is the discovery node's configuration. Its heartbeat,
// deregister_after and self_preservation keys are the discovery package's
// Timing, defaults and rules and all.
type Config struct {
	config.Common    `koanf:",squash"`
	Node             NodeConfig `koanf:"node"`
	discovery.Timing `koanf:",squash"`
	KV               KVConfig      `koanf:"kv"`
	HTTP             config.HTTP   `koanf:"http"`
	Console          ConsoleConfig `koanf:"console"`
	// Consul serves Consul's read API on http.addr (beside the console,
	// guarded by console.tokens_file) and DNS on dns.addr, from the node's
	// own follower of hail_instances (PROTOCOL v1.3). Default off.
	Consul ConsulConfig `koanf:"consul"`
	// DNS is the agent's dns section, served when consul.enabled.
	DNS consul.DNSConfig `koanf:"dns"`
	// Insecure lets the console listen beyond loopback without tokens
	// (--insecure, as services/nats's).
	Insecure bool `koanf:"insecure"`
	// RemoteRegions are the other regions whose registries the node
	// sources into hail_remote (PROTOCOL v1.5). Default none.
	RemoteRegions []string `koanf:"remote_regions"`
	// RemoteStale: a remote region whose source has not delivered for
	// this long is stale. Default 10s.
	RemoteStale time.Duration `koanf:"remote_stale"`
}

// ConsoleConfig guards the console served on http.addr (the probes and
// /metrics stay open).
type ConsoleConfig struct {
	// TokensFile holds "<read|write> sha256:<hex>" lines (hash a token
	// with `discovery hash-token`). Empty: no authentication.
	TokensFile string `koanf:"tokens_file"`
	// Hosts the Host header may name; empty allows any.
	Hosts []string `koanf:"hosts"`
	// NATS is the console's own NATS user (the console role of PROTOCOL
	// v1.2, which may write routes; the node's may not): it connects as
	// that user to nats.url, with nats.tls. Default none: the console
	// shares the node's connection.
	NATS ConsoleNATS `koanf:"nats"`
	// Admin is the operator's user the page deregisters instances as
	// (the admin role of PROTOCOL v1.6, admin.env of secure init with
	// identities, its default; its inbox prefix defaults to
	// _INBOX.admin, where discovery answers it). Default none: the page deregisters on the
	// console's connection, which only an open region lets it.
	Admin ConsoleNATS `koanf:"admin"`
}

// ConsoleNATS is who the console connects as.
type ConsoleNATS struct {
	User         string `koanf:"user"`
	Password     string `koanf:"password"`
	PasswordFile string `koanf:"password_file"`
	// InboxPrefix of its replies. Default _INBOX.
	InboxPrefix string `koanf:"inbox_prefix"`
}

// consoleNATS is the console's connection section: the node's servers and
// TLS, the console's user.
func (c *Config) consoleNATS() config.NATS {
	n := c.NATS
	n.User, n.Password, n.PasswordFile, n.InboxPrefix = c.Console.NATS.User, c.Console.NATS.Password, c.Console.NATS.PasswordFile, c.Console.NATS.InboxPrefix
	n.Token, n.TokenFile, n.NKey, n.Creds = "", "", "", ""
	return n
}

// consoleAdmin is the connection section of the console's admin user.
func (c *Config) consoleAdmin() config.NATS {
	n := c.NATS
	n.User, n.Password, n.PasswordFile = c.Console.Admin.User, c.Console.Admin.Password, c.Console.Admin.PasswordFile
	n.InboxPrefix = cmp.Or(c.Console.Admin.InboxPrefix, "_INBOX."+events.RoleAdmin)
	n.Token, n.TokenFile, n.NKey, n.Creds = "", "", "", ""
	return n
}

// ConsulConfig switches Consul's interfaces on.
type ConsulConfig struct {
	Enabled bool `koanf:"enabled"`
}

// NodeConfig describes this node.
type NodeConfig struct {
	// ID is the node's UUID. Default: a new one each start.
	ID string `koanf:"id"`
	// AZ is the node's availability zone. Default empty.
	AZ string `koanf:"az"`
	// Hostname recorded in hail_nodes. Default the OS hostname.
	Hostname string `koanf:"hostname"`
	// TTL is how long the node's hail_nodes entry outlives its last
	// refresh. Default 3s.
	TTL time.Duration `koanf:"ttl"`
}

// KVConfig tunes the buckets.
type KVConfig struct {
	// Replicas of each bucket; 0 means min(3, cluster size). Default 0.
	Replicas int `koanf:"replicas"`
}

func defaults() *Config {
	return &Config{
		Common: config.DefaultCommon(),
		Node:   NodeConfig{TTL: bus.DefaultNodeTTL},
		Timing: discovery.DefaultTiming(),
		DNS:    consul.DefaultDNS(),

		RemoteStale: discovery.DefaultRemoteStale,
	}
}

// Validate checks every field and names the ones that are wrong.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(c.Common.Validate())
	if c.Node.ID != "" {
		if err := events.ValidateID(c.Node.ID); err != nil {
			add(config.FieldError("node.id", "%v", err))
		}
	}
	if c.Node.TTL < time.Second {
		add(config.FieldError("node.ttl", "%v is below 1s", c.Node.TTL))
	}
	add(c.Timing.Validate())
	if c.Heartbeat.Interval >= c.Node.TTL {
		add(config.FieldError("heartbeat.interval", "%v must be below node.ttl (%v): the node refreshes its hail_nodes entry every interval", c.Heartbeat.Interval, c.Node.TTL))
	}
	if c.HTTP.Addr != "" && c.Console.TokensFile == "" && !c.Insecure {
		if host, _, err := net.SplitHostPort(c.HTTP.Addr); err == nil && !config.Loopback(host) {
			add(config.FieldError("console.tokens_file", "http.addr %s is reachable beyond this machine: set console.tokens_file, or insecure to serve the console to anyone who reaches it", c.HTTP.Addr))
		}
	}
	if c.Console.NATS.User != "" {
		if err := c.consoleNATS().Validate(); err != nil {
			add(fmt.Errorf("console.nats: %w", err))
		}
	} else if c.Console.NATS != (ConsoleNATS{}) {
		add(config.FieldError("console.nats.user", "is empty while other console.nats keys are set"))
	}
	if c.Console.Admin.User != "" {
		if err := c.consoleAdmin().Validate(); err != nil {
			add(fmt.Errorf("console.admin: %w", err))
		}
	} else if c.Console.Admin != (ConsoleNATS{}) {
		add(config.FieldError("console.admin.user", "is empty while other console.admin keys are set"))
	}
	if c.Consul.Enabled {
		add(c.DNS.Validate())
		if c.HTTP.Addr == "" && c.DNS.Addr == "" {
			add(config.FieldError("consul.enabled", "neither http.addr nor dns.addr is set: nothing to serve Consul's interfaces on"))
		}
	}
	for _, r := range c.RemoteRegions {
		if err := events.ValidateRegion(r); err != nil {
			add(config.FieldError("remote_regions", "%v", err))
		}
	}
	if c.RemoteStale <= 0 {
		add(config.FieldError("remote_stale", "%v is not above 0", c.RemoteStale))
	}
	if c.KV.Replicas < 0 || c.KV.Replicas > 5 {
		add(config.FieldError("kv.replicas", "%d is out of range 0..5", c.KV.Replicas))
	}
	return errors.Join(errs...)
}

// reloadable are the keys a running node takes up from an edited config
// file (log.level too).
var reloadable = []string{"heartbeat.", "deregister_after", "self_preservation."}

// hashToken prints the tokens-file hash of the token on in's first line,
// read from stdin so that it stays out of shell history and ps.
func hashToken(in io.Reader, out io.Writer) error {
	line, err := bufio.NewReader(in).ReadString('\n')
	tok := strings.TrimSpace(line)
	if tok == "" {
		return fmt.Errorf("hash-token: give the token on stdin (%v)", err)
	}
	_, err = fmt.Fprintln(out, roles.HashToken(tok))
	return err
}

func run(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	if len(args) > 0 && args[0] == "hash-token" {
		return hashToken(os.Stdin, out)
	}
	cfg := defaults()
	loaded, err := config.Start(cfg, "discovery", args, getenv, out)
	if loaded == nil || err != nil {
		return err
	}
	log := loaded.Log
	nc, err := cfg.NATS.Connect(ctx, "hail-discovery", log)
	if err != nil {
		return err
	}
	defer bus.Drain(nc, 5*time.Second)
	kv, err := bus.EnsureBuckets(ctx, nc, bus.BucketOptions{Replicas: cfg.KV.Replicas, NodeTTL: cfg.Node.TTL, Subjects: events.Subjects{Prefix: cfg.Prefix}})
	if err != nil {
		return err
	}
	region, err := cfg.RegionOf(nc)
	if err != nil {
		return err
	}
	set := metrics.NewSet()
	node, err := discovery.New(nc, kv, discovery.Config{
		NodeID:        cfg.Node.ID,
		AZ:            cfg.Node.AZ,
		Hostname:      cfg.Node.Hostname,
		Subjects:      events.Subjects{Prefix: cfg.Prefix},
		Region:        region,
		RemoteRegions: cfg.RemoteRegions,
		RemoteStale:   cfg.RemoteStale,
		Timing:        cfg.Timing,
		Logger:        log,
		Metrics:       set,
	})
	if err != nil {
		return err
	}
	// The console and the listeners are made before any goroutine
	// starts, so that a failure here returns with nothing to join.
	var serve []func(context.Context) error
	var view *consul.View
	if cfg.Consul.Enabled {
		view = consul.NewView(consul.Datacenter(nc))
		serve = append(serve, func(ctx context.Context) error { return view.Run(ctx, node.Registry()) })
		if cfg.DNS.Addr != "" {
			pc, l, err := consul.ListenDNS(cfg.DNS.Addr)
			if err != nil {
				return err
			}
			dns := consul.NewDNS(view, cfg.DNS, set)
			serve = append(serve, func(ctx context.Context) error { return dns.Serve(ctx, pc, l, log) })
		}
	}
	if cfg.HTTP.Addr != "" {
		var owns []*nats.Conn
		var console []func(context.Context) error
		console, owns, err = openConsole(ctx, cfg, nc, kv, node, view, set, log)
		serve = append(serve, console...)
		for _, c := range owns {
			defer bus.Drain(c, 5*time.Second) // after g.Wait
		}
		if err != nil {
			return err
		}
	}
	// Everything runs in one errgroup, joined before the connections
	// drain (the deferred Drains above run after g.Wait).
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		config.Watch[*Config]{
			Fresh:      defaults,
			Reloadable: reloadable,
			Apply:      func(c *Config) error { return node.Reconfigure(c.Timing) },
			Metrics:    set,
		}.Run(gctx, loaded, cfg)
		return nil
	})
	for _, f := range serve {
		g.Go(func() error { return f(gctx) })
	}
	g.Go(func() error { return node.Run(gctx) })
	return g.Wait()
}

// consoleReadyWait is how long the console may take to read the buckets
// before the node says why it cannot.
const consoleReadyWait = 10 * time.Second

// openConsole makes the console served on http.addr: its connection (its
// own NATS user, or the node's), the region view, the listener, and the
// functions that run them. The console shares the node's followers of
// hail_instances and hail_nodes and follows the routes itself. A console
// that cannot read the buckets keeps trying and says what to set: it never
// stops the node (its watches are made again, and an error of the region
// is logged, not returned).
// owns are the console's own connections (its user's, its admin's), for
// the caller to drain once the functions returned.
func openConsole(ctx context.Context, cfg *Config, nc *nats.Conn, kv *bus.Buckets, node *discovery.Node, view *consul.View, set *metrics.Set, log *slog.Logger) (serve []func(context.Context) error, owns []*nats.Conn, err error) {
	cnc, ckv := nc, kv
	if cfg.Console.NATS.User != "" {
		if cnc, err = cfg.consoleNATS().Connect(ctx, "hail-console", log); err != nil {
			return nil, nil, fmt.Errorf("console.nats: %w", err)
		}
		owns = append(owns, cnc)
		if ckv, err = bus.OpenBuckets(ctx, cnc, log); err != nil {
			return nil, owns, fmt.Errorf("console: %w", err)
		}
	}
	var operator *nats.Conn
	if cfg.Console.Admin.User != "" {
		if operator, err = cfg.consoleAdmin().Connect(ctx, "hail-console-admin", log); err != nil {
			return nil, owns, fmt.Errorf("console.admin: %w", err)
		}
		owns = append(owns, operator)
	}
	region := console.NewRegion(cnc, ckv, console.RegionConfig{Subjects: events.Subjects{Prefix: cfg.Prefix}, Logger: log, Metrics: set, Registry: node.Registry(), Nodes: node.Nodes(), Admin: operator})
	probe, err := bus.NewProbe(nc, 2*time.Second)
	if err != nil {
		return nil, owns, err
	}
	guard := console.Guard{Hosts: cfg.Console.Hosts}
	if cfg.Console.TokensFile != "" {
		if guard.Tokens, err = roles.LoadTokens(cfg.Console.TokensFile); err != nil {
			return nil, owns, err
		}
	}
	l, err := admin.Listen(cfg.HTTP.Listener)
	if err != nil {
		return nil, owns, err
	}
	ready := func() bool { return node.Ready() && probe.Reachable() }
	ui := region.Handler(guard)
	if view != nil {
		host := cfg.Node.Hostname
		if host == "" {
			host, _ = os.Hostname()
		}
		mux := http.NewServeMux()
		mux.Handle("/v1/", consul.Handler(view, consul.HTTPOptions{NodeName: host, Tokens: guard.Tokens, Metrics: set}))
		mux.Handle("/", ui)
		ui = mux
	}
	clog := log.With("component", "console")
	return []func(context.Context) error{
		func(ctx context.Context) error {
			if err := region.Run(ctx); err != nil {
				clog.Error("console stopped; the node serves on", "err", err)
			}
			return nil
		},
		func(ctx context.Context) error {
			select {
			case <-region.Ready():
			case <-ctx.Done():
			case <-time.After(consoleReadyWait):
				clog.Error("console not ready: it cannot read the buckets yet; it keeps trying, and the node serves meanwhile", "hint", consoleHint(cfg))
			}
			return nil
		},
		probe.Run,
		func(ctx context.Context) error {
			return admin.Serve(ctx, l, admin.Handler(set, ready, ui, admin.Profiles(cfg.HTTP.Pprof)), log)
		},
	}, owns, nil
}

// consoleHint says what a console that cannot read the buckets most
// likely lacks.
func consoleHint(cfg *Config) string {
	if cfg.Console.NATS.User == "" && (cfg.NATS.User != "" || cfg.NATS.Creds != "" || cfg.NATS.NKey != "" || cfg.NATS.Token != "" || cfg.NATS.TokenFile != "") {
		return "it shares the node's NATS user, which under hail's roles may not read hail_config: give it the console user with console.nats.user, console.nats.password_file (or console.nats.password) and console.nats.inbox_prefix (HAIL_CONSOLE_NATS_USER, HAIL_CONSOLE_NATS_PASSWORD_FILE, HAIL_CONSOLE_NATS_INBOX_PREFIX)"
	}
	return "check that its NATS user (console.nats.user, else nats.user) may read hail_instances, hail_nodes and hail_config"
}
