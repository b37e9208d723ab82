// Command greeter runs the example HTTP service that the agent registers
// in the compose stack (the dev stack runs the same handler in process).
package main

import (
	"context"
	"errors"
	"io"

	"github.com/hailsd/hail/admin"
	"github.com/hailsd/hail/config"
	"github.com/hailsd/hail/greeter"
	"github.com/hailsd/hail/program"
)

func main() { program.Main(run) }

// Config is the greeter's configuration.
type Config struct {
	// Addr it serves /hello and /health on. Default 127.0.0.1:8090.
	Addr          string `koanf:"addr"`
	config.Logged `koanf:",squash"`
}

// Validate names every wrong field.
func (c *Config) Validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, config.FieldError("addr", "is empty"))
	}
	return errors.Join(append(errs, c.Log.Validate())...)
}

func run(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	cfg := &Config{Addr: "127.0.0.1:8090", Logged: config.Logged{Log: config.DefaultLog}}
	loaded, err := config.Start(cfg, "greeter", args, getenv, out)
	if loaded == nil || err != nil {
		return err
	}
	l, err := admin.Listen(config.Listener{Addr: cfg.Addr})
	if err != nil {
		return err
	}
	return admin.Serve(ctx, l, (&greeter.Server{}).Handler(), loaded.Log)
}
