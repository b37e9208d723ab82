// Command bench measures plain NATS request-reply, routing through a
// router, and client-side routing side by side in one run, and prints a
// Markdown table with each path's ratio to plain NATS.
package main

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/hailsd/hail/bench"
	"github.com/hailsd/hail/config"
	"github.com/hailsd/hail/program"
)

func main() { program.Main(run) }

// Config is one benchmark run.
type Config struct {
	// NATS.URL of a server with JetStream; empty starts an embedded one.
	// Default empty.
	NATS config.NATS `koanf:"nats"`
	// Instances of the echo service. Default 3.
	Instances int `koanf:"instances"`
	// Concurrency is the requests in flight. Default 32.
	Concurrency int `koanf:"concurrency"`
	// Payload bytes per request. Default 128.
	Payload int `koanf:"payload"`
	// Duration measured per path. Default 10s.
	Duration time.Duration `koanf:"duration"`
	// Warmup per path before measuring. Default 1s.
	Warmup time.Duration `koanf:"warmup"`
	// Rounds: each path's duration is measured in this many turns, the
	// paths taking turns. Default 10.
	Rounds int `koanf:"rounds"`
	// Secure measures a secured region (TLS, a user per role) beside the
	// open one, in the same rotation. Default false.
	Secure        bool `koanf:"secure"`
	config.Logged `koanf:",squash"`
}

func defaults() *Config {
	log := config.DefaultLog
	log.Level = "warn"
	return &Config{Instances: 3, Concurrency: 32, Payload: 128, Duration: 10 * time.Second, Warmup: time.Second, Rounds: 10, Logged: config.Logged{Log: log}}
}

// Validate names every wrong field.
func (c *Config) Validate() error {
	var errs []error
	if c.NATS.URL != "" {
		errs = append(errs, c.NATS.Validate())
	}
	errs = append(errs, c.Log.Validate())
	if c.Instances < 1 || c.Instances > 100 {
		errs = append(errs, config.FieldError("instances", "%d is out of range 1..100", c.Instances))
	}
	if c.Concurrency < 1 || c.Concurrency > 4096 {
		errs = append(errs, config.FieldError("concurrency", "%d is out of range 1..4096", c.Concurrency))
	}
	if c.Payload < 1 || c.Payload > 1<<20 {
		errs = append(errs, config.FieldError("payload", "%d is out of range 1..1048576", c.Payload))
	}
	if c.Duration <= 0 {
		errs = append(errs, config.FieldError("duration", "%v must be positive", c.Duration))
	}
	if c.Rounds < 1 || c.Rounds > 1000 {
		errs = append(errs, config.FieldError("rounds", "%d is out of range 1..1000", c.Rounds))
	}
	if c.Warmup <= 0 {
		errs = append(errs, config.FieldError("warmup", "%v must be positive", c.Warmup))
	}
	return errors.Join(errs...)
}

func run(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	cfg := defaults()
	loaded, err := config.Start(cfg, "bench", args, getenv, out)
	if loaded == nil || err != nil {
		return err
	}
	log := loaded.Log
	bc := bench.Config{URL: cfg.NATS.URL, Instances: cfg.Instances, Concurrency: cfg.Concurrency,
		Payload: cfg.Payload, Duration: cfg.Duration, Warmup: cfg.Warmup, Rounds: cfg.Rounds, Secure: cfg.Secure, Logger: log}
	results, err := bench.Run(ctx, bc)
	if err != nil {
		return err
	}
	bench.Write(out, bc, results)
	return nil
}
