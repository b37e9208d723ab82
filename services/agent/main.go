// Command agent registers services that do not speak NATS with hail and
// checks them the way Consul does (PROTOCOL v1.1 "The agent").
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/knadh/koanf/parsers/yaml"
	"golang.org/x/sync/errgroup"

	"github.com/hailsd/hail/admin"
	"github.com/hailsd/hail/agent"
	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/config"
	"github.com/hailsd/hail/events"
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
	// HTTP serves the agent's API (/v1/checks, /v1/check/...), /metrics,
	// /healthz and /readyz. Default empty: off (deploy/agent.yaml sets
	// 127.0.0.1:8500, which TTL checks need).
	HTTP     config.HTTP           `koanf:"http"`
	Services []agent.ServiceConfig `koanf:"services"`
}

func defaults() *Config {
	return &Config{
		Common:            config.DefaultCommon(),
		HeartbeatInterval: time.Second,
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
	natsOpts, err := cfg.NATS.Options()
	if err != nil {
		return err
	}
	nc, err := bus.Connect(ctx, bus.ConnectOptions{URL: cfg.NATS.URL, Name: "hail-agent", Logger: log, Extra: natsOpts})
	if err != nil {
		return err
	}
	defer bus.Drain(nc, 5*time.Second)
	set := metrics.NewSet()
	a := agent.New(nc, agent.Config{
		Subjects: events.Subjects{Prefix: cfg.Prefix}, HeartbeatInterval: cfg.HeartbeatInterval, Logger: log, Metrics: set,
	})
	var l net.Listener
	if cfg.HTTP.Addr != "" {
		if l, err = admin.Listen(cfg.HTTP); err != nil {
			return err
		}
	}
	// Everything runs in one errgroup, joined before the connection
	// drains: the agent deregisters its services first.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.Run(gctx, cfg.Services) })
	g.Go(func() error {
		config.Watch[*Config]{
			Fresh:      defaults,
			Reloadable: []string{"services"},
			Apply: func(c *Config) error {
				if err := fileKeys(loaded.File); err != nil {
					return err
				}
				return a.Apply(c.Services)
			},
			Metrics: set,
		}.Run(gctx, loaded, cfg)
		return nil
	})
	if l != nil {
		g.Go(func() error { return admin.Serve(gctx, l, admin.Handler(set, nc.IsConnected, a.Handler()), log) })
	}
	return g.Wait()
}
