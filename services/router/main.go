// Command router routes requests on hail.route.<service>.<endpoint> to one
// healthy instance of the service.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/hailsd/hail/admin"
	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/config"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/program"
	"github.com/hailsd/hail/registry"
	"github.com/hailsd/hail/router"
	"golang.org/x/sync/errgroup"
)

func main() { program.Main(run) }

// Config is the router's configuration. Its route and ejection sections
// are the router package's own types, defaults and all.
type Config struct {
	config.Common `koanf:",squash"`
	Route         router.RouteDefaults `koanf:"route"`
	Ejection      router.Ejection      `koanf:"ejection"`
	// Workers is how many subscriptions share hail.route.>. Default 0:
	// one per CPU.
	Workers int `koanf:"workers"`
	// MaxInflight bounds routed calls in progress. Default 4096.
	MaxInflight int `koanf:"max_inflight"`
	// DrainTimeout bounds the wait for calls in progress at shutdown.
	// Default 10s.
	DrainTimeout time.Duration `koanf:"drain_timeout"`
	// StatsInterval is how often the router publishes its traffic on
	// hail.stats.router.<id> (the console's golden metrics). Default 5s.
	StatsInterval time.Duration `koanf:"stats_interval"`
	HTTP          config.HTTP   `koanf:"http"`
	// Ingress takes plain HTTP: /<service>/<endpoint>[/<rest>] routed like
	// hail.route.<service>.<endpoint>. Default empty: off.
	Ingress config.Listener `koanf:"ingress"`
	// AZ is the router's zone: requests stay in it while its instances
	// carry their share (PROTOCOL v1.5). Default empty: one zone.
	AZ string `koanf:"az"`
	// RemoteRegions are the regions a service with no instance at home is
	// routed to, nearest first (comma-separated in env and flags).
	// Default empty: none.
	RemoteRegions []string `koanf:"remote_regions"`
	// RemoteStale: a region whose hail_remote source has been inactive
	// this long is not routed to. Default 10s.
	RemoteStale time.Duration `koanf:"remote_stale"`
}

func defaults() *Config {
	d := router.DefaultConfig()
	return &Config{
		Common:        config.DefaultCommon(),
		Route:         d.Table.Route,
		Ejection:      d.Table.Ejection,
		Workers:       d.Workers,
		MaxInflight:   d.MaxInflight,
		DrainTimeout:  d.DrainTimeout,
		StatsInterval: router.DefaultStatsInterval,
		RemoteStale:   registry.DefaultRemoteStale,
	}
}

// maxAZ bounds the zone's name.
const maxAZ = 128

// Validate checks every field and names the ones that are wrong.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(c.Common.Validate())
	add(config.Section("route", c.Route.Validate()))
	add(config.Section("ejection", c.Ejection.Validate()))
	if c.Workers < 0 || c.Workers > 256 {
		add(config.FieldError("workers", "%d is out of range 0..256", c.Workers))
	}
	if c.MaxInflight < 1 {
		add(config.FieldError("max_inflight", "%d is below 1", c.MaxInflight))
	}
	if c.DrainTimeout <= 0 {
		add(config.FieldError("drain_timeout", "%v must be positive", c.DrainTimeout))
	}
	if c.StatsInterval < 100*time.Millisecond {
		add(config.FieldError("stats_interval", "%v is below 100ms", c.StatsInterval))
	}
	if len(c.AZ) > maxAZ {
		add(config.FieldError("az", "is %d bytes, over %d", len(c.AZ), maxAZ))
	}
	seen := map[string]bool{}
	for _, r := range c.RemoteRegions {
		if err := events.ValidateRegion(r); err != nil {
			add(config.FieldError("remote_regions", "%v", err))
		} else if seen[r] {
			add(config.FieldError("remote_regions", "%q is named twice", r))
		}
		seen[r] = true
	}
	// A source's idle heartbeat comes every second: below two, a quiet
	// region would flap.
	if c.RemoteStale < 2*time.Second {
		add(config.FieldError("remote_stale", "%v is below 2s", c.RemoteStale))
	}
	return errors.Join(errs...)
}

// routerConfig is the router package's view of c.
func (c *Config) routerConfig(set *metrics.Set, log *slog.Logger) router.Config {
	return router.Config{
		Table: router.TableConfig{
			Subjects:      events.Subjects{Prefix: c.Prefix},
			Route:         c.Route,
			Ejection:      c.Ejection,
			Logger:        log,
			Metrics:       set,
			AZ:            c.AZ,
			RemoteRegions: c.RemoteRegions,
			RemoteStale:   c.RemoteStale,
		},
		Workers: c.Workers, MaxInflight: c.MaxInflight, DrainTimeout: c.DrainTimeout, StatsInterval: c.StatsInterval,
	}
}

// reloadable are the keys a running router takes up from an edited config
// file (log.level too): the route defaults.
var reloadable = []string{"route.strategy", "route.timeout", "route.retries", "route.hash_load_factor", "route.warning_weight"}

func run(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	cfg := defaults()
	loaded, err := config.Start(cfg, "router", args, getenv, out)
	if loaded == nil || err != nil {
		return err
	}
	log := loaded.Log
	nc, err := cfg.NATS.Connect(ctx, "hail-router", log)
	if err != nil {
		return err
	}
	defer bus.Drain(nc, 5*time.Second)
	set := metrics.NewSet()
	r, err := router.New(nc, cfg.routerConfig(set, log))
	if err != nil {
		return err
	}
	// The listeners are opened before any goroutine starts, so that a
	// failure here returns with nothing to join.
	var il, l net.Listener
	if cfg.Ingress.Addr != "" {
		if il, err = admin.Listen(cfg.Ingress); err != nil {
			return fmt.Errorf("ingress.addr: %w", err)
		}
		defer il.Close() // a no-op once served; closes it on an early return
	}
	var probe *bus.Probe
	if cfg.HTTP.Addr != "" {
		if probe, err = bus.NewProbe(nc, 2*time.Second); err != nil {
			return err
		}
		if l, err = admin.Listen(cfg.HTTP.Listener); err != nil {
			return err
		}
		defer l.Close()
	}
	// Everything runs in one errgroup, joined before the connection
	// drains.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		config.Watch[*Config]{
			Fresh:      defaults,
			Reloadable: reloadable,
			Apply:      func(c *Config) error { return r.Table().SetDefaults(c.Route) },
			Metrics:    set,
		}.Run(gctx, loaded, cfg)
		return nil
	})
	if il != nil {
		g.Go(func() error { return admin.Serve(gctx, il, r.Ingress(), log.With("component", "ingress")) })
	}
	if l != nil {
		ready := func() bool { return r.Ready() && probe.Reachable() }
		g.Go(func() error { return probe.Run(gctx) })
		g.Go(func() error {
			return admin.Serve(gctx, l, admin.Handler(set, ready, nil, admin.Profiles(cfg.HTTP.Pprof)), log)
		})
	}
	g.Go(func() error { return r.Run(gctx) })
	return g.Wait()
}
