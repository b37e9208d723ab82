// Command nats runs one NATS server with JetStream, embedded from
// nats-server, alone or as a member of a cluster: the NATS of hail's
// compose stack and of its process-topology test, so that a machine with
// only Go can run a whole region.
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

	"github.com/nats-io/nats-server/v2/server"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/embedded"
	"github.com/hailsd/hail/callout"
	"github.com/hailsd/hail/config"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/program"
)

func main() { program.Main(run) }

// Config is the server's configuration.
type Config struct {
	// Name of the server, unique in its cluster. Default hail-nats.
	Name string `koanf:"name"`
	// Listen is the client address. Default 127.0.0.1:4222.
	Listen string `koanf:"listen"`
	// StoreDir holds JetStream's data. Default ./nats-data.
	StoreDir string `koanf:"store_dir"`
	// MonitorPort serves nats-server's /healthz, /varz, /jsz; 0 serves
	// none. Default 0.
	MonitorPort int `koanf:"monitor_port"`
	// MonitorHost is where monitoring listens. Default 127.0.0.1.
	MonitorHost string `koanf:"monitor_host"`
	// ProfPort serves nats-server's own Go profiles (/debug/pprof/); 0
	// serves none. nats-server binds it on listen's host, not on
	// monitor_host, and no auth.file guards it: a profile shows the
	// server's internals to whoever reaches it, so beyond loopback it
	// needs insecure. Default 0.
	ProfPort int           `koanf:"prof_port"`
	Cluster  ClusterConfig `koanf:"cluster"`
	// Region the server belongs to (PROTOCOL v1.5): its JetStream
	// domain, and the cluster's name when cluster.routes are set.
	// Default empty: no domain (programs then call the region local).
	Region    string     `koanf:"region"`
	Leafnodes LeafConfig `koanf:"leafnodes"`
	// Prefix of the hail subjects the leafnode denies are written for.
	// Default hail.
	Prefix string     `koanf:"prefix"`
	TLS    TLSConfig  `koanf:"tls"`
	Auth   AuthConfig `koanf:"auth"`
	// Insecure lets the server listen beyond loopback without auth.file,
	// take routes beyond loopback without TLS, and serve profiles
	// (prof_port) beyond loopback. Default false: it refuses to.
	Insecure      bool `koanf:"insecure"`
	config.Logged `koanf:",squash"`
}

// TLSConfig turns TLS on for clients and cluster routes.
type TLSConfig struct {
	// Cert and Key are the server's certificate and key (PEM). Default
	// none: no TLS.
	Cert string `koanf:"cert"`
	Key  string `koanf:"key"`
	// CA verifies clients' (and routes') certificates. Default none.
	CA string `koanf:"ca"`
	// Verify requires clients to present a certificate the CA signed.
	// Default false.
	Verify bool `koanf:"verify"`
}

// AuthConfig is who may connect.
type AuthConfig struct {
	// File is a nats-server configuration holding accounts and users
	// (authorization), such as `secure init` writes; included as is.
	// Default none: anyone may connect.
	File string `koanf:"file"`
}

// LeafConfig joins the region to other regions by leafnodes (PROTOCOL
// v1.5), each link with the v1.5 denies, written by this program. With
// auth.file, links authenticate as the user leaf with the password in
// leaf.password beside it (secure init writes one), over TLS when
// tls.cert is set; every region's servers share that file and the CA.
type LeafConfig struct {
	// Listen accepts other regions' links, host:port. Default empty:
	// none.
	Listen string `koanf:"listen"`
	// Remotes are other regions (or a hub) to link to,
	// nats-leaf://host:port each. Default none.
	Remotes []string `koanf:"remotes"`
}

// ClusterConfig joins the server to a cluster when Name is set.
type ClusterConfig struct {
	// Name of the cluster; empty runs a single server. Default empty.
	Name string `koanf:"name"`
	// Listen is the route address. Default 127.0.0.1:6222.
	Listen string `koanf:"listen"`
	// Routes are the peers, nats-route://host:port, comma-separated.
	// Default empty.
	Routes string `koanf:"routes"`
	// Advertise is the route address told to peers. Default empty: the
	// listen address.
	Advertise string `koanf:"advertise"`
}

func defaults() *Config {
	return &Config{Name: "hail-nats", Listen: "127.0.0.1:4222", StoreDir: "nats-data", MonitorHost: "127.0.0.1", Prefix: events.DefaultPrefix,
		Cluster: ClusterConfig{Listen: "127.0.0.1:6222"}, Logged: config.Logged{Log: config.DefaultLog}}
}

// Validate names every wrong field.
func (c *Config) Validate() error {
	errs := []error{c.Log.Validate()}
	if c.Name == "" || strings.ContainsAny(c.Name, " \t") {
		errs = append(errs, config.FieldError("name", "%q must be a non-empty word", c.Name))
	}
	if _, _, err := hostPort(c.Listen); err != nil {
		errs = append(errs, config.FieldError("listen", "%v", err))
	}
	if c.StoreDir == "" {
		errs = append(errs, config.FieldError("store_dir", "is empty"))
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		errs = append(errs, config.FieldError("tls.cert", "and tls.key go together"))
	}
	if c.TLS.Verify && c.TLS.CA == "" {
		errs = append(errs, config.FieldError("tls.verify", "needs tls.ca to verify clients with"))
	}
	for key, file := range map[string]string{"tls.cert": c.TLS.Cert, "tls.key": c.TLS.Key, "tls.ca": c.TLS.CA, "auth.file": c.Auth.File} {
		if file != "" {
			if _, err := os.Stat(file); err != nil {
				errs = append(errs, config.FieldError(key, "%v", err))
			}
		}
	}
	host, _, listenErr := hostPort(c.Listen)
	beyondLoopback := listenErr == nil && !config.Loopback(host)
	if beyondLoopback && c.Auth.File == "" && !c.Insecure {
		errs = append(errs, config.FieldError("listen", "%s is beyond loopback and no auth.file says who may connect; set auth.file (secure init writes one) or, knowingly, insecure", c.Listen))
	}
	for _, p := range []struct {
		key  string
		port int
	}{{"monitor_port", c.MonitorPort}, {"prof_port", c.ProfPort}} {
		if p.port < 0 || p.port > 65535 {
			errs = append(errs, config.FieldError(p.key, "%d is out of range 0..65535", p.port))
		}
	}
	if beyondLoopback && c.ProfPort != 0 && !c.Insecure {
		errs = append(errs, config.FieldError("prof_port", "serves profiles on listen's host %s, beyond loopback, to anyone who reaches it (auth.file does not guard them); unset it or, knowingly, set insecure", host))
	}
	errs = append(errs, c.validateRegion()...)
	if c.clusterName() != "" {
		if _, _, err := hostPort(c.Cluster.Listen); err != nil {
			errs = append(errs, config.FieldError("cluster.listen", "%v", err))
		}
		// A route is trusted with everything: beyond loopback, only a
		// peer with a certificate the CA signed may be one.
		if host, _, err := hostPort(c.Cluster.Listen); err == nil && !config.Loopback(host) && (c.TLS.Cert == "" || c.TLS.CA == "") && !c.Insecure {
			errs = append(errs, config.FieldError("cluster.listen", "%s is beyond loopback and routes are not authorized; set tls.cert, tls.key and tls.ca (routes then verify each other's certificates) or, knowingly, insecure", c.Cluster.Listen))
		}
		for _, r := range c.routes() {
			if !strings.HasPrefix(r, "nats-route://") {
				errs = append(errs, config.FieldError("cluster.routes", "%q is not nats-route://host:port", r))
			} else if _, _, err := hostPort(strings.TrimPrefix(r, "nats-route://")); err != nil {
				errs = append(errs, config.FieldError("cluster.routes", "%q: %v", r, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (c *Config) routes() []string { return list(c.Cluster.Routes) }

// validateRegion checks region and the leafnodes.
func (c *Config) validateRegion() []error {
	var errs []error
	if c.Region != "" {
		if err := events.ValidateRegion(c.Region); err != nil {
			errs = append(errs, config.FieldError("region", "%v", err))
		}
		if c.Cluster.Name != "" && c.Cluster.Name != c.Region && c.Cluster.Routes != "" {
			errs = append(errs, config.FieldError("cluster.name", "%q is not region %q: a region's cluster is named for it (or leave cluster.name empty)", c.Cluster.Name, c.Region))
		}
	}
	if _, err := events.NewSubjects(c.Prefix); err != nil {
		errs = append(errs, config.FieldError("prefix", "%v", err))
	}
	leaf := c.Leafnodes
	if (leaf.Listen != "" || len(leaf.Remotes) > 0) && c.Region == "" {
		errs = append(errs, config.FieldError("region", "is empty, but leafnodes are set: regions are linked by their names (JetStream domains)"))
	}
	if leaf.Listen != "" {
		host, _, err := hostPort(leaf.Listen)
		switch {
		case err != nil:
			errs = append(errs, config.FieldError("leafnodes.listen", "%v", err))
		case !config.Loopback(host) && c.Auth.File == "" && !c.Insecure:
			errs = append(errs, config.FieldError("leafnodes.listen", "%s is beyond loopback and no auth.file says who may link; set auth.file (links then need the leaf user) or, knowingly, insecure", leaf.Listen))
		}
	}
	if len(leaf.Remotes) > 0 && c.Auth.File != "" && c.TLS.Cert != "" && c.TLS.CA == "" {
		errs = append(errs, config.FieldError("tls.ca", "is empty, but leafnodes.remotes link over TLS: the CA verifies the other region's certificate"))
	}
	for _, r := range leaf.Remotes {
		if !strings.HasPrefix(r, "nats-leaf://") {
			errs = append(errs, config.FieldError("leafnodes.remotes", "%q is not nats-leaf://host:port", bus.RedactURL(r)))
		} else if _, _, err := hostPort(strings.TrimPrefix(r, "nats-leaf://")); err != nil {
			errs = append(errs, config.FieldError("leafnodes.remotes", "%q: %v", bus.RedactURL(r), err))
		}
	}
	return errs
}

// clusterName is the cluster's name: cluster.name, else the region when
// routes are set (a single server with a cluster block never elects a
// JetStream leader, so a region of one has none).
func (c *Config) clusterName() string {
	if c.Cluster.Name != "" {
		return c.Cluster.Name
	}
	if c.Cluster.Routes != "" {
		return c.Region
	}
	return ""
}

func hostPort(addr string) (string, int, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port", addr)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q: port %q is not a number in 0..65535", addr, portText)
	}
	return host, port, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	if len(args) >= 2 && args[0] == "secure" && args[1] == "init" {
		return secureInit(args[2:], out)
	}
	cfg := defaults()
	loaded, err := config.Start(cfg, "nats", args, getenv, out)
	if loaded == nil || err != nil {
		return err
	}
	log := loaded.Log
	host, port, _ := hostPort(cfg.Listen) // validated
	o := embedded.ServerOptions{Name: cfg.Name, Host: host, Port: port, StoreDir: cfg.StoreDir, HTTPPort: cfg.MonitorPort, HTTPHost: cfg.MonitorHost, ProfPort: cfg.ProfPort, Logger: log}
	configure, err := embedded.Security{Cert: cfg.TLS.Cert, Key: cfg.TLS.Key, CA: cfg.TLS.CA, Verify: cfg.TLS.Verify, AuthFile: cfg.Auth.File}.Configure()
	if err != nil {
		return fmt.Errorf("NATS server %s: %w", cfg.Name, err)
	}
	var probe server.Options
	configure(&probe)
	if name := cfg.clusterName(); name != "" {
		chost, cport, _ := hostPort(cfg.Cluster.Listen)
		o.Cluster = embedded.ClusterOptions{Name: name, Host: chost, Port: cport, Routes: cfg.routes(), Advertise: cfg.Cluster.Advertise}
	}
	// A region of this one's name joined by a link this server made stops
	// it: it refuses to join. The server that accepted the link, and any
	// server that finds a link without the denies (which the other side
	// wrote), logs the fault and serves on: one misconfigured region must
	// not stop the regions it tried to join.
	faults := make(chan error, 1)
	if configure, err = cfg.regionOptions(&o, configure, func(err error) {
		if !errors.Is(err, embedded.ErrSameRegion) || len(cfg.Leafnodes.Remotes) == 0 {
			return // logged by the link checker
		}
		select {
		case faults <- err:
		default:
		}
	}); err != nil {
		return fmt.Errorf("NATS server %s: %w", cfg.Name, err)
	}
	o.Configure = configure
	stopCallout := func() {}
	if probe.AuthCallout != nil {
		// secure init (identities, its default) wrote the callout's
		// files beside auth.file. The callout listens before the
		// server does: a client that connected first would wait out
		// its authorization and be refused.
		c, err := callout.NewInProcess(filepath.Dir(cfg.Auth.File), log)
		if err != nil {
			return fmt.Errorf("NATS server %s: %w", cfg.Name, err)
		}
		o.BeforeClients = func(srv *server.Server) (err error) {
			stopCallout, err = c.Start(srv)
			return err
		}
	}
	srv, err := embedded.StartServer(o)
	if err != nil {
		return fmt.Errorf("NATS server %s: %w", cfg.Name, err)
	}
	defer stopCallout()
	log.Info("NATS server ready", "name", cfg.Name, "url", srv.ClientURL(), "cluster", cfg.clusterName(), "region", cfg.Region, "leafnodes_listen", cfg.Leafnodes.Listen, "leafnodes_remotes", len(cfg.Leafnodes.Remotes))
	var fault error
	select {
	case <-ctx.Done():
	case fault = <-faults:
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	if fault != nil {
		return fmt.Errorf("NATS server %s of region %s stopped, refusing the join: %w", cfg.Name, cfg.Region, fault)
	}
	return nil
}
