// Command echo runs instances of hail's example service.
package main

import (
	"context"
	"errors"
	"io"
	"net"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/hailsd/hail/admin"
	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/config"
	"github.com/hailsd/hail/echo"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/identity"
	"github.com/hailsd/hail/instance"
	"github.com/hailsd/hail/member"
	"github.com/hailsd/hail/program"
	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"
)

func main() { program.Main(run) }

// Config is the echo service's configuration.
type Config struct {
	config.Common `koanf:",squash"`
	// Name of the service. Default echo.
	Name string `koanf:"name"`
	// Version announced. Default 1.0.0.
	Version string `koanf:"version"`
	// Weight announced, 0..10000; 0 drains. Default 100.
	Weight int `koanf:"weight"`
	// AZ announced. Default empty.
	AZ string `koanf:"az"`
	// Capacity is how many requests one instance handles at once. Default 64.
	Capacity int `koanf:"capacity"`
	// HeartbeatInterval is discovery's; the instance announces again after
	// three of them without a heartbeat. Default 1s.
	HeartbeatInterval time.Duration `koanf:"heartbeat_interval"`
	// DrainTimeout bounds the wait for requests in flight at shutdown. Default 10s.
	DrainTimeout time.Duration `koanf:"drain_timeout"`
	// Scoped announces "scoped": true (PROTOCOL v1.2): heartbeated and
	// reached on subjects that name the service, which a credential can
	// be confined to. Default false.
	Scoped bool        `koanf:"scoped"`
	HTTP   config.HTTP `koanf:"http"`
	// Identity connects the instance as its own identity (PROTOCOL v1.6),
	// in a region set up with secure init's identities (its default).
	Identity Identity `koanf:"identity"`
}

// Identity is an instance's own identity.
type Identity struct {
	// SecretFile is the service's bootstrap secret, svc-<name>.secret of
	// secure init (identities, its default). Set, the instance connects with its own
	// nkey, the service's name and this secret (no nats user, token,
	// nkey or creds), and is scoped. Default empty: no identity.
	SecretFile string `koanf:"secret_file"`
	// SeedFile keeps the identity's nkey seed (0600), made at the first
	// start, so that the instance keeps its id across restarts. Default
	// empty: a new identity, and id, at every start.
	SeedFile string `koanf:"seed_file"`
}

func defaults() *Config {
	return &Config{
		Common: config.DefaultCommon(), Name: "echo", Version: "1.0.0", Weight: events.DefaultWeight, Capacity: 64,
		HeartbeatInterval: time.Second, DrainTimeout: 10 * time.Second,
	}
}

// Validate names every wrong field.
func (c *Config) Validate() error {
	var errs []error
	errs = append(errs, c.Common.Validate())
	if err := events.ValidateService(c.Name); err != nil {
		errs = append(errs, config.FieldError("name", "%v", err))
	}
	if c.Weight < 0 || c.Weight > events.MaxWeight {
		errs = append(errs, config.FieldError("weight", "%d is out of range 0..%d", c.Weight, events.MaxWeight))
	}
	if c.Capacity < 1 {
		errs = append(errs, config.FieldError("capacity", "%d is below 1", c.Capacity))
	}
	if c.HeartbeatInterval < 10*time.Millisecond {
		errs = append(errs, config.FieldError("heartbeat_interval", "%v is below 10ms", c.HeartbeatInterval))
	}
	if c.DrainTimeout <= 0 {
		errs = append(errs, config.FieldError("drain_timeout", "%v is not positive", c.DrainTimeout))
	}
	if c.Identity.SecretFile != "" {
		if n := c.NATS; n.User != "" || n.Token != "" || n.TokenFile != "" || n.NKey != "" || n.Creds != "" {
			errs = append(errs, config.FieldError("identity.secret_file", "an identity connects with its own nkey and its service's secret: set no nats user, token, nkey or creds with it"))
		}
	} else if c.Identity.SeedFile != "" {
		errs = append(errs, config.FieldError("identity.seed_file", "is an identity's seed: set identity.secret_file too"))
	}
	return errors.Join(errs...)
}

// identityOptions are the identity's connect options and the identity,
// when c names a secret; none otherwise.
func (c *Config) identityOptions() ([]nats.Option, *identity.Identity, error) {
	if c.Identity.SecretFile == "" {
		return nil, nil, nil
	}
	secret, err := member.ReadSecret(c.Identity.SecretFile)
	if err != nil {
		return nil, nil, config.FieldError("identity.secret_file", "%v", err)
	}
	id, err := member.LoadOrNew(c.Identity.SeedFile)
	if err != nil {
		return nil, nil, config.FieldError("identity.seed_file", "%v", err)
	}
	return member.IdentityOptions(id, c.Name, secret), id, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	cfg := defaults()
	loaded, err := config.Start(cfg, "echo", args, getenv, out)
	if loaded == nil || err != nil {
		return err
	}
	log := loaded.Log
	natsOpts, err := cfg.NATS.Options()
	if err != nil {
		return err
	}
	idOpts, id, err := cfg.identityOptions()
	if err != nil {
		return err
	}
	nc, err := bus.Connect(ctx, bus.ConnectOptions{URL: cfg.NATS.URL, Name: "hail-" + cfg.Name, Logger: log, Extra: append(natsOpts, idOpts...)})
	if err != nil {
		return err
	}
	defer bus.Drain(nc, 5*time.Second)
	// The listener is opened before the instance announces and before any
	// goroutine starts, so that a failure here returns with nothing to
	// undo or join.
	var l net.Listener
	if cfg.HTTP.Addr != "" {
		if l, err = admin.Listen(cfg.HTTP.Listener); err != nil {
			return err
		}
		defer l.Close() // a no-op once served
	}
	set := metrics.NewSet()
	inst, err := echo.Start(ctx, nc, instance.Config{
		Service: cfg.Name, Version: cfg.Version, Weight: cfg.Weight, Drain: cfg.Weight == 0, AZ: cfg.AZ,
		Subjects: events.Subjects{Prefix: cfg.Prefix}, HeartbeatInterval: cfg.HeartbeatInterval,
		Capacity: cfg.Capacity, DrainTimeout: cfg.DrainTimeout, Scoped: cfg.Scoped, Logger: log, Metrics: set,
		Identity: id,
	})
	if err != nil {
		return err
	}
	// Everything runs in one errgroup, joined before the connection
	// drains; the instance deregisters and drains first.
	g, gctx := errgroup.WithContext(ctx)
	if l != nil {
		ready := func() bool { return nc.IsConnected() }
		g.Go(func() error {
			return admin.Serve(gctx, l, admin.Handler(set, ready, nil, admin.Profiles(cfg.HTTP.Pprof)), log)
		})
	}
	g.Go(func() error {
		config.Watch[*Config]{
			Fresh:      defaults,
			Reloadable: []string{"weight"},
			Apply:      func(c *Config) error { return inst.SetWeight(c.Weight) },
			Metrics:    set,
		}.Run(gctx, loaded, cfg)
		return nil
	})
	<-gctx.Done()
	return errors.Join(inst.Shutdown(context.WithoutCancel(ctx)), g.Wait())
}
