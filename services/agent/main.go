// Command agent registers services that do not speak NATS with hail and
// checks them the way Consul does (PROTOCOL v1.1 "The agent").
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	"github.com/hailsd/hail/admin"
	"github.com/hailsd/hail/agent"
	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/config"
	"github.com/hailsd/hail/consul"
	"github.com/hailsd/hail/credentials"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/identity"
	"github.com/hailsd/hail/member"
	"github.com/hailsd/hail/program"
)

func main() { program.Main(run) }

// Config is the agent's configuration. The services come from the YAML
// file (--config): a list has no environment variable or flag.
type Config struct {
	config.Common `koanf:",squash"`
	// HeartbeatInterval is discovery's: a service that hears no heartbeat
	// for three of them announces again. Default 1s.
	HeartbeatInterval time.Duration `koanf:"heartbeat_interval"`
	// HTTP serves the agent's API (/v1/checks, /v1/check/...), Consul's
	// read API (PROTOCOL v1.3), /metrics, /healthz and /readyz. Default
	// 127.0.0.1:8500, Consul's port; empty: off.
	HTTP HTTPConfig `koanf:"http"`
	// DNS answers Consul-style names (PROTOCOL v1.3). Default
	// 127.0.0.1:8600, domain hail.
	DNS      consul.DNSConfig      `koanf:"dns"`
	Services []agent.ServiceConfig `koanf:"services"`
	// DataDir keeps the services registered through Consul's API, so a
	// restart registers them again with the same ids. Default hail-agent
	// under the user's state directory.
	DataDir string `koanf:"data_dir"`
	// APIScriptChecks allows checks with args registered through Consul's
	// API (Consul's enable_script_checks). Default false: refused, 403.
	APIScriptChecks bool `koanf:"api_script_checks"`
	// Identities registers every service as its own identity (PROTOCOL
	// v1.6), in a region set up with secure init's identities (its
	// default).
	Identities Identities `koanf:"identities"`
}

// Identities are the agent's services' own identities.
type Identities struct {
	// SecretsDir holds the services' bootstrap secrets,
	// svc-<name>.secret (secure init's --dir). Set, each
	// service connects as its own identity with its service's secret,
	// its seed kept in data_dir/identities/<name>.seed so that its id
	// survives restarts (a service's id must then be empty: its id is
	// its key's); the agent's own connection (nats.*) still reads the
	// registry for Consul's interfaces. Default empty: every service on
	// the agent's connection.
	SecretsDir string `koanf:"secrets_dir"`
}

// identity connects service as its own identity, as Identities says.
func (c *Config) identity(natsOpts []nats.Option, log *slog.Logger) func(context.Context, string) (*nats.Conn, *identity.Identity, error) {
	return func(ctx context.Context, service string) (*nats.Conn, *identity.Identity, error) {
		secret, err := member.ReadSecret(filepath.Join(c.Identities.SecretsDir, credentials.SecretFile(service)))
		if err != nil {
			return nil, nil, config.FieldError("identities.secrets_dir", "%v", err)
		}
		dir := filepath.Join(c.DataDir, "identities")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, nil, config.FieldError("data_dir", "%v", err)
		}
		id, err := member.LoadOrNew(filepath.Join(dir, service+".seed"))
		if err != nil {
			return nil, nil, err
		}
		nc, err := bus.Connect(ctx, bus.ConnectOptions{URL: c.NATS.URL, Name: id.ID(), Logger: log.With("service", service),
			Extra: append(slices.Clone(natsOpts), member.IdentityOptions(id, service, secret)...)})
		if err != nil {
			return nil, nil, err
		}
		return nc, id, nil
	}
}

// defaultDataDir is hail-agent under the user's state directory
// ($XDG_STATE_HOME, else ~/.local/state).
func defaultDataDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "hail-agent")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "hail-agent")
	}
	return "hail-agent"
}

// HTTPConfig is the agent's http section: Consul's API, and the pprof of
// every program's http section (config.HTTP), which Consul's section
// elsewhere (the dev stack's consul) does not have.
type HTTPConfig struct {
	consul.HTTPConfig `koanf:",squash"`
	// Pprof serves Go's profiles under /debug/pprof/ (config.HTTP.Pprof).
	// Default false.
	Pprof bool `koanf:"pprof"`
}

func defaults() *Config {
	return &Config{
		Common:            config.DefaultCommon(),
		HeartbeatInterval: time.Second,
		HTTP:              HTTPConfig{HTTPConfig: consul.HTTPConfig{Listener: config.Listener{Addr: "127.0.0.1:8500"}, MaxBlocking: consul.DefaultMaxBlocking}},
		DNS:               consul.DefaultDNS(),
		DataDir:           defaultDataDir(),
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
	if c.HeartbeatInterval < 10*time.Millisecond {
		add(config.FieldError("heartbeat_interval", "%v is below 10ms", c.HeartbeatInterval))
	}
	add(agent.ValidateServices(c.Services))
	add(c.HTTP.Validate("http"))
	add(c.DNS.Validate())
	if c.DataDir == "" {
		add(config.FieldError("data_dir", "is empty"))
	}
	if c.Identities.SecretsDir != "" {
		for i, svc := range c.Services {
			if svc.ID != "" {
				add(config.FieldError(fmt.Sprintf("services[%d].id", i), "is its identity's with identities.secrets_dir (derived from its key): leave it empty"))
			}
		}
	}
	return errors.Join(errs...)
}

// fileKeys refuses keys of the services list that the agent does not know
// (koanf passes them over inside list items).
func fileKeys(file string) error {
	if file == "" {
		return nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	raw, err := yaml.Parser().Unmarshal(data)
	if err != nil {
		return fmt.Errorf("config file %s: %w", file, err)
	}
	if err := agent.CheckKeys(raw["services"]); err != nil {
		return fmt.Errorf("config file %s: %w", file, err)
	}
	return nil
}

func run(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	cfg := defaults()
	loaded, err := config.Start(cfg, "agent", args, getenv, out)
	if loaded == nil || err != nil {
		return err
	}
	if err := fileKeys(loaded.File); err != nil {
		return err
	}
	log := loaded.Log
	nc, err := cfg.NATS.Connect(ctx, "hail-agent", log)
	if err != nil {
		return err
	}
	defer bus.Drain(nc, 5*time.Second)
	set := metrics.NewSet()
	acfg := agent.Config{
		Subjects: events.Subjects{Prefix: cfg.Prefix}, HeartbeatInterval: cfg.HeartbeatInterval, Logger: log, Metrics: set,
	}
	if cfg.Identities.SecretsDir != "" {
		// The identities keep the section's servers and TLS, never the
		// agent's own credentials: theirs are the identity's nkey and the
		// service's secret (a creds file beside an nkey is refused).
		tlsOnly := cfg.NATS
		tlsOnly.User, tlsOnly.Password, tlsOnly.PasswordFile, tlsOnly.InboxPrefix = "", "", "", ""
		tlsOnly.Token, tlsOnly.TokenFile, tlsOnly.NKey, tlsOnly.Creds = "", "", "", ""
		natsOpts, err := tlsOnly.Options()
		if err != nil {
			return err
		}
		acfg.Identity = cfg.identity(natsOpts, log)
	}
	a := agent.New(nc, acfg)
	var l net.Listener
	if cfg.HTTP.Addr != "" {
		if l, err = admin.Listen(cfg.HTTP.Listener); err != nil {
			return err
		}
	}
	// Consul's interfaces answer from a follower of hail_instances.
	view := consul.NewView(consul.Datacenter(nc))
	host, _ := os.Hostname()
	consulOpts, err := cfg.HTTP.Options("http", host)
	if err != nil {
		return err
	}
	consulOpts.Metrics = set
	var dnsUDP net.PacketConn
	var dnsTCP net.Listener
	if cfg.DNS.Addr != "" {
		if dnsUDP, dnsTCP, err = consul.ListenDNS(cfg.DNS.Addr); err != nil {
			return err
		}
	}
	// Services registered through Consul's API run beside the config's.
	reg, err := consul.NewRegistrar(a, consul.RegistrarConfig{Dir: cfg.DataDir, Scripts: cfg.APIScriptChecks, Tokens: consulOpts.Tokens, Logger: log})
	if err != nil {
		return err
	}
	// Everything runs in one errgroup, joined before the connection
	// drains: the agent deregisters its services first.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.Run(gctx, reg.Services(cfg.Services)) })
	g.Go(func() error {
		config.Watch[*Config]{
			Fresh:      defaults,
			Reloadable: []string{"services"},
			Apply: func(c *Config) error {
				if err := fileKeys(loaded.File); err != nil {
					return err
				}
				return reg.SetConfig(c.Services)
			},
			Metrics: set,
		}.Run(gctx, loaded, cfg)
		return nil
	})
	g.Go(func() error {
		return consul.Follow(gctx, nc, view, log, set.GetOrCreateCounter("hail_agent_registry_invalid_total").Inc)
	})
	if dnsUDP != nil {
		g.Go(func() error { return consul.NewDNS(view, cfg.DNS, set).Serve(gctx, dnsUDP, dnsTCP, log) })
	}
	if l != nil {
		api := http.NewServeMux()
		api.Handle("/v1/checks", a.Handler())
		api.Handle("/v1/check/", a.Handler())
		for _, p := range []string{"/v1/agent/service/", "/v1/agent/check/", "/v1/agent/services", "/v1/agent/checks"} {
			api.Handle(p, reg.Handler())
		}
		api.Handle("/", consul.Handler(view, consulOpts))
		g.Go(func() error {
			return admin.Serve(gctx, l, admin.Handler(set, nc.IsConnected, api, admin.Profiles(cfg.HTTP.Pprof)), log)
		})
	}
	return g.Wait()
}
