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

	"github.com/hailsd/hail/bus/embedded"
	"github.com/hailsd/hail/callout"
	"github.com/hailsd/hail/config"
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
	MonitorHost string        `koanf:"monitor_host"`
	Cluster     ClusterConfig `koanf:"cluster"`
	TLS         TLSConfig     `koanf:"tls"`
	Auth        AuthConfig    `koanf:"auth"`
	// Insecure lets the server listen beyond loopback without auth.file.
	// Default false: it refuses to.
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
	return &Config{Name: "hail-nats", Listen: "127.0.0.1:4222", StoreDir: "nats-data", MonitorHost: "127.0.0.1",
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
	if host, _, err := hostPort(c.Listen); err == nil && !config.Loopback(host) && c.Auth.File == "" && !c.Insecure {
		errs = append(errs, config.FieldError("listen", "%s is beyond loopback and no auth.file says who may connect; set auth.file (secure init writes one) or, knowingly, insecure", c.Listen))
	}
	if c.MonitorPort < 0 || c.MonitorPort > 65535 {
		errs = append(errs, config.FieldError("monitor_port", "%d is out of range 0..65535", c.MonitorPort))
	}
	if c.Cluster.Name != "" {
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
	o := embedded.ServerOptions{Name: cfg.Name, Host: host, Port: port, StoreDir: cfg.StoreDir, HTTPPort: cfg.MonitorPort, HTTPHost: cfg.MonitorHost, Logger: log}
	configure, err := embedded.Security{Cert: cfg.TLS.Cert, Key: cfg.TLS.Key, CA: cfg.TLS.CA, Verify: cfg.TLS.Verify, AuthFile: cfg.Auth.File}.Configure()
	if err != nil {
		return fmt.Errorf("NATS server %s: %w", cfg.Name, err)
	}
	o.Configure = configure
	var probe server.Options
	configure(&probe)
	if cfg.Cluster.Name != "" {
		chost, cport, _ := hostPort(cfg.Cluster.Listen)
		o.Cluster = embedded.ClusterOptions{Name: cfg.Cluster.Name, Host: chost, Port: cport, Routes: cfg.routes(), Advertise: cfg.Cluster.Advertise}
	}
	srv, err := embedded.StartServer(o)
	if err != nil {
		return fmt.Errorf("NATS server %s: %w", cfg.Name, err)
	}
	if probe.AuthCallout != nil {
		// secure init --identities wrote the callout's files beside
		// auth.file.
		stop, err := callout.StartInProcess(srv, filepath.Dir(cfg.Auth.File), log)
		if err != nil {
			srv.Shutdown()
			srv.WaitForShutdown()
			return fmt.Errorf("NATS server %s: %w", cfg.Name, err)
		}
		defer stop()
	}
	log.Info("NATS server ready", "name", cfg.Name, "url", srv.ClientURL(), "cluster", cfg.Cluster.Name)
	<-ctx.Done()
	srv.Shutdown()
	srv.WaitForShutdown()
	return nil
}
