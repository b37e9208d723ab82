package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
)

func TestValidateNamesTheField(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"listen without port", func(c *Config) { c.Listen = "127.0.0.1" }, "listen"},
		{"listen port not a number", func(c *Config) { c.Listen = "127.0.0.1:x" }, "listen"},
		{"empty name", func(c *Config) { c.Name = "" }, "name"},
		{"empty store", func(c *Config) { c.StoreDir = "" }, "store_dir"},
		{"monitor port", func(c *Config) { c.MonitorPort = 70000 }, "monitor_port"},
		{"prof port above range", func(c *Config) { c.ProfPort = 65536 }, "prof_port"},
		{"prof port negative", func(c *Config) { c.ProfPort = -1 }, "prof_port"},
		{"profiles beyond loopback", func(c *Config) { c.ProfPort, c.Listen, c.Auth.File = 6060, "0.0.0.0:4222", "main.go" }, "prof_port"},
		{"route scheme", func(c *Config) { c.Cluster.Name = "hail"; c.Cluster.Routes = "nats://a:6222" }, "cluster.routes"},
		{"route port", func(c *Config) { c.Cluster.Name = "hail"; c.Cluster.Routes = "nats-route://a" }, "cluster.routes"},
		{"cluster listen", func(c *Config) { c.Cluster.Name = "hail"; c.Cluster.Listen = ":" }, "cluster.listen"},
		{"routes beyond loopback without authorization", func(c *Config) { c.Cluster.Name = "hail"; c.Cluster.Listen = "0.0.0.0:6222" }, "cluster.listen"},
		{"region not a token", func(c *Config) { c.Region = "eu.west" }, "region"},
		{"region upper case", func(c *Config) { c.Region = "EU" }, "region"},
		{"leafnodes without region", func(c *Config) { c.Leafnodes.Listen = "127.0.0.1:7422" }, "region"},
		{"leafnodes listen", func(c *Config) { c.Region = "eu"; c.Leafnodes.Listen = "7422" }, "leafnodes.listen"},
		{"leafnodes beyond loopback without auth", func(c *Config) { c.Region = "eu"; c.Leafnodes.Listen = "0.0.0.0:7422" }, "leafnodes.listen"},
		{"leafnodes remote scheme", func(c *Config) { c.Region = "eu"; c.Leafnodes.Remotes = []string{"nats://a:7422"} }, "leafnodes.remotes"},
		{"region's cluster", func(c *Config) { c.Region = "eu"; c.Cluster.Name = "hail"; c.Cluster.Routes = "nats-route://a:6222" }, "cluster.name"},
		{"secured link without a CA", func(c *Config) {
			c.Region, c.Leafnodes.Remotes, c.Auth.File, c.TLS.Cert, c.TLS.Key = "us", []string{"nats-leaf://eu:7422"}, "main.go", "main.go", "main.go"
		}, "tls.ca"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := defaults()
			tt.edit(c)
			err := c.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), tt.field+":") {
				t.Errorf("Validate() = %v, want an error naming %s", err, tt.field)
			}
		})
	}
	for _, edit := range []func(*Config){
		func(c *Config) { c.ProfPort = 6060 },
		func(c *Config) { c.ProfPort = 65535 },
		func(c *Config) { c.ProfPort, c.Listen, c.Auth.File, c.Insecure = 6060, "0.0.0.0:4222", "main.go", true },
	} {
		c := defaults()
		edit(c)
		if err := c.Validate(); err != nil {
			t.Errorf("a good prof_port %d on %s: %v", c.ProfPort, c.Listen, err)
		}
	}
	c := defaults()
	c.Cluster = ClusterConfig{Name: "hail", Listen: "0.0.0.0:6222", Routes: "nats-route://nats-1:6222, nats-route://nats-2:6222"}
	c.Insecure = true // knowingly: routes without TLS beyond loopback
	if err := c.Validate(); err != nil {
		t.Errorf("a good cluster config: %v", err)
	}
}

// Validate never panics, and what it accepts the server can be given.
func FuzzValidate(f *testing.F) {
	f.Add("127.0.0.1:4222", "hail", "0.0.0.0:6222", "nats-route://a:6222,nats-route://b:6222")
	f.Add(":", "", "x", ",,")
	f.Add("[::1]:4222", "c", "[::]:6222", "nats-route://[::1]:6222")
	f.Fuzz(func(t *testing.T, listen, cluster, clusterListen, routes string) {
		c := defaults()
		c.Listen, c.Cluster = listen, ClusterConfig{Name: cluster, Listen: clusterListen, Routes: routes}
		if c.Validate() != nil {
			return
		}
		if _, _, err := hostPort(c.Listen); err != nil {
			t.Fatalf("accepted listen %q: %v", c.Listen, err)
		}
		for _, r := range c.routes() {
			if !strings.HasPrefix(r, "nats-route://") {
				t.Fatalf("accepted route %q", r)
			}
		}
	})
}

// prof_port reaches nats-server: its profiles are served there, on the
// client host.
func TestProfPortServed(t *testing.T) {
	prof := bustest.FreePort(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", fmt.Sprintf("127.0.0.1:%d", bustest.FreePort(t)), "--store-dir", t.TempDir(),
			"--prof-port", strconv.Itoa(prof), "--log-level", "warn"}, func(string) string { return "" }, io.Discard)
	}()
	bustest.Eventually(t, 15*time.Second, func() error { // the server starting
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/cmdline", prof))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /debug/pprof/cmdline: %s", resp.Status)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
