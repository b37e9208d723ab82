// Command swarm runs many protocol-speaking instances in one process over
// a few connections (package swarm), so that a region's limits can be
// measured with the load on its own cores or another machine.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	"github.com/hailsd/hail/admin"
	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/config"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/program"
	"github.com/hailsd/hail/swarm"
)

func main() { program.Main(run) }

// Config is the swarm's configuration.
type Config struct {
	config.Common `koanf:",squash"`
	// Name of the services: <name>-0 ... Default swarm.
	Name string `koanf:"name"`
	// Instances to run. Default 1000.
	Instances int `koanf:"instances"`
	// Services they are spread over. Default 100.
	Services int `koanf:"services"`
	// Silent instances more, in service <name>-silent: they answer until
	// POST /silence on http.addr (?n=N: N of those registered), and again
	// after POST /unsilence. Default 0.
	Silent int `koanf:"silent"`
	// Connections the instances share. Default 4.
	Connections int `koanf:"connections"`
	// HeartbeatInterval is discovery's, for the re-announce rule. Default 1s.
	HeartbeatInterval time.Duration `koanf:"heartbeat_interval"`
	// InFlight bounds the announces waiting for an answer. Default 256.
	InFlight int `koanf:"in_flight"`
	// Deregister every instance on exit. Default true.
	Deregister bool `koanf:"deregister"`
	// V1 makes every instance a client written from PROTOCOL v1 alone:
	// it announces at once, on every hail.discover at once, and after 3
	// heartbeat intervals without a heartbeat, with no backoff, ignoring
	// spread_ms and retry_after_ms, and without conn. Default false: the
	// SDK's rules.
	V1 bool `koanf:"v1"`
	// HTTP serves /metrics and POST /silence. Default empty: none.
	HTTP config.HTTP `koanf:"http"`
}

func defaults() *Config {
	return &Config{Common: config.DefaultCommon(), Name: "swarm", Instances: 1000, Services: 100,
		Connections: 4, HeartbeatInterval: time.Second, InFlight: 256, Deregister: true}
}

// Validate names every wrong field.
func (c *Config) Validate() error {
	errs := []error{c.Common.Validate()}
	if err := events.ValidateService(c.Name + "-silent"); err != nil {
		errs = append(errs, config.FieldError("name", "%v", err))
	}
	if c.Instances < 0 || c.Instances > 1_000_000 {
		errs = append(errs, config.FieldError("instances", "%d is out of range 0..1000000", c.Instances))
	}
	if c.Services < 1 || c.Services > 100_000 {
		errs = append(errs, config.FieldError("services", "%d is out of range 1..100000", c.Services))
	}
	if c.Silent < 0 || c.Silent > 1_000_000 {
		errs = append(errs, config.FieldError("silent", "%d is out of range 0..1000000", c.Silent))
	}
	if c.Connections < 1 || c.Connections > 1000 {
		errs = append(errs, config.FieldError("connections", "%d is out of range 1..1000", c.Connections))
	}
	if c.HeartbeatInterval <= 0 {
		errs = append(errs, config.FieldError("heartbeat_interval", "%v must be positive", c.HeartbeatInterval))
	}
	if c.InFlight < 1 || c.InFlight > 100_000 {
		errs = append(errs, config.FieldError("in_flight", "%d is out of range 1..100000", c.InFlight))
	}
	return errors.Join(errs...)
}

func run(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	cfg := defaults()
	loaded, err := config.Start(cfg, "swarm", args, getenv, out)
	if loaded == nil || err != nil {
		return err
	}
	log := loaded.Log
	var conns []*nats.Conn
	defer func() {
		for _, nc := range conns {
			bus.Drain(nc, 5*time.Second)
		}
	}()
	for i := range cfg.Connections {
		nc, err := cfg.NATS.Connect(ctx, fmt.Sprintf("hail-swarm-%d", i), log)
		if err != nil {
			return err
		}
		conns = append(conns, nc)
	}
	set := metrics.NewSet()
	s, err := swarm.New(conns, swarm.Config{Instances: cfg.Instances, Services: cfg.Services, Silent: cfg.Silent, Name: cfg.Name,
		Subjects: events.Subjects{Prefix: cfg.Prefix}, HeartbeatInterval: cfg.HeartbeatInterval, InFlight: cfg.InFlight,
		Deregister: cfg.Deregister, V1: cfg.V1, Logger: log, Metrics: set})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	if cfg.HTTP.Addr != "" {
		l, err := admin.Listen(cfg.HTTP.Listener)
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.HandleFunc("POST /silence", func(w http.ResponseWriter, r *http.Request) {
			n := 0
			if text := r.URL.Query().Get("n"); text != "" {
				v, err := strconv.Atoi(text)
				if err != nil || v < 1 {
					http.Error(w, fmt.Sprintf("n: %q is not a positive number", text), http.StatusBadRequest)
					return
				}
				n = v
			}
			ids := s.Silence(n)
			log.Info("silent instances silenced", "instances", len(ids))
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(struct {
				Silenced []string `json:"silenced"`
			}{ids})
		})
		mux.HandleFunc("POST /unsilence", func(w http.ResponseWriter, _ *http.Request) {
			s.Unsilence()
			log.Info("silent instances answer again")
			fmt.Fprintln(w, "unsilenced")
		})
		ready := func() bool { return s.Registered() == cfg.Instances+cfg.Silent }
		g.Go(func() error {
			return admin.Serve(gctx, l, admin.Handler(set, ready, mux, admin.Profiles(cfg.HTTP.Pprof)), log)
		})
	}
	log.Info("swarm starting", "instances", cfg.Instances, "silent", cfg.Silent, "services", cfg.Services, "connections", cfg.Connections, "v1", cfg.V1)
	g.Go(func() error { return s.Run(gctx) })
	return g.Wait()
}
