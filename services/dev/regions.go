package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/embedded"
	"github.com/hailsd/hail/config"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/echo"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/instance"
	"github.com/hailsd/hail/router"
)

// validateRegions checks --regions: none (one region), or two or more
// regions of distinct names; the parts a region of the dev stack does not
// run (security, the greeter, Consul's interfaces, the console) are left
// to the one-region stack.
func (c *Config) validateRegions() []error {
	if len(c.Regions) == 0 {
		return nil
	}
	var errs []error
	if len(c.Regions) < 2 {
		errs = append(errs, config.FieldError("regions", "names one region (%v); name two or more, or none", c.Regions))
	}
	for i, r := range c.Regions {
		if err := events.ValidateRegion(r); err != nil {
			errs = append(errs, config.FieldError("regions", "%v", err))
		} else if slices.Contains(c.Regions[:i], r) {
			errs = append(errs, config.FieldError("regions", "%q is named twice: two regions of one name must not be joined", r))
		}
	}
	if c.Secure {
		errs = append(errs, config.FieldError("regions", "and secure together are not run by the dev stack: secure one region, or see README \"Regions\" for secured links"))
	}
	return errs
}

// remotesOf are the regions other than own, in the order given: a
// region's discovery sources them, and its router goes to them nearest
// first.
func remotesOf(names []string, own string) []string {
	return slices.DeleteFunc(slices.Clone(names), func(r string) bool { return r == own })
}

// runRegions runs the regions of --regions in one process: one server
// each, JetStream in the region's domain, joined by leafnodes (the first
// accepts the others' links), and in each its discovery node(s), a
// router and echo instances. The first region's clients listen on
// nats.url, the next ones on the ports after it.
func runRegions(ctx context.Context, cfg *Config, port int, storeDir string, log *slog.Logger, out io.Writer) error {
	rs, err := embedded.StartRegions(ctx, embedded.RegionsOptions{Names: cfg.Regions, Dir: storeDir, Port: port,
		OnFault: func(region string, err error) { log.Error("region link fault", "region", region, "err", err) }})
	if err != nil {
		return fmt.Errorf("start regions %v: %w", cfg.Regions, err)
	}
	defer rs.Shutdown()
	stopped := make(chan error, 1)
	var comps []*component
	var conns []*nats.Conn
	var insts []*instance.Instance
	defer func() {
		for i := len(comps) - 1; i >= 0; i-- {
			_ = comps[i].stop()
		}
		for i := len(conns) - 1; i >= 0; i-- {
			bus.Drain(conns[i], 5*time.Second)
		}
	}()
	connect := func(region, name string) (*nats.Conn, error) {
		nc, err := bus.Connect(ctx, bus.ConnectOptions{URL: rs.URL(region), Name: name + "-" + region, Logger: log})
		if err == nil {
			conns = append(conns, nc)
		}
		return nc, err
	}
	for _, region := range cfg.Regions {
		rlog := log.With("region", region)
		remotes := remotesOf(cfg.Regions, region)
		for i := range cfg.Discovery {
			nc, err := connect(region, fmt.Sprintf("hail-discovery-%d", i+1))
			if err != nil {
				return err
			}
			kv, err := bus.EnsureBuckets(ctx, nc, bus.BucketOptions{})
			if err != nil {
				return err
			}
			node, err := discovery.New(nc, kv, discovery.Config{Region: region, RemoteRegions: remotes, Logger: rlog, Metrics: metrics.NewSet()})
			if err != nil {
				return err
			}
			c := start(ctx, node.Run, stopped)
			comps = append(comps, c)
			if err := c.wait(ctx, node.Serving(), "discovery node of "+region); err != nil {
				return err
			}
		}
		rnc, err := connect(region, "hail-router")
		if err != nil {
			return err
		}
		rt, err := router.New(rnc, regionRouter(rlog, remotes))
		if err != nil {
			return err
		}
		rc := start(ctx, rt.Run, stopped)
		comps = append(comps, rc)
		if err := rc.wait(ctx, rt.Serving(), "router of "+region); err != nil {
			return err
		}
		for i := range cfg.Echo {
			enc, err := connect(region, fmt.Sprintf("hail-echo-%d", i+1))
			if err != nil {
				return err
			}
			inst, err := echo.Start(ctx, enc, instance.Config{Service: "echo", Version: "1.0.0", AZ: fmt.Sprintf("%s-%c", region, 'a'+i%3), Logger: rlog, Metrics: metrics.NewSet()})
			if err != nil {
				return err
			}
			insts = append(insts, inst)
		}
	}
	printRegions(out, rs, cfg.Regions, cfg.Echo)

	var failed error
	select {
	case <-ctx.Done():
	case err := <-stopped:
		failed = fmt.Errorf("a part of the stack stopped on its own: %w", err)
	}
	fmt.Fprintln(out, "stopping hail dev stack")
	for _, inst := range insts {
		if err := inst.Shutdown(context.WithoutCancel(ctx)); err != nil {
			log.Warn("echo shutdown", "instance_id", inst.ID(), "err", err)
		}
	}
	errs := []error{failed}
	for i := len(comps) - 1; i >= 0; i-- {
		errs = append(errs, comps[i].stop())
	}
	comps = nil
	return errors.Join(errs...)
}

// regionRouter is a region's router. remotes are its remote_regions,
// nearest first (PROTOCOL v1.5): the table follows hail_remote and routes
// a service with no instance at home that may take a request to the
// first of them that has one, and home again as soon as one passes.
func regionRouter(log *slog.Logger, remotes []string) router.Config {
	return router.Config{Table: router.TableConfig{Logger: log, Metrics: metrics.NewSet(), RemoteRegions: remotes}}
}

func printRegions(w io.Writer, rs *embedded.Regions, names []string, echoes int) {
	fmt.Fprintf(w, "\nhail dev stack is up: %d regions joined by leafnodes (%s)\n", len(names), strings.Join(names, ", "))
	for _, r := range names {
		fmt.Fprintf(w, "  %-6s NATS %s (JetStream domain %s), discovery, a router, %d echo instances\n", r, rs.URL(r), r, echoes)
	}
	first, second := names[0], names[1]
	s := events.Subjects{}
	fmt.Fprintf(w, `
Try, with the nats CLI:
  nats -s %[1]s request %[3]s hi                          # answered in %[5]s
  nats -s %[1]s request %[4]s '{"region":"*"}'           # every region's instances, with region and stale
  nats -s %[1]s kv ls hail_remote                                # %[6]s's registry, sourced into %[5]s
Move traffic: run this stack with --echo 0 and your own instances, then Ctrl-C %[5]s's:
  go run ./services/echo --nats-url %[1]s &      # in %[5]s
  go run ./services/echo --nats-url %[2]s &      # in %[6]s
  kill %%1                                        # %[5]s has no echo left: %[5]s's router goes to %[6]s
  nats -s %[1]s request %[3]s hi                          # answered in %[6]s (header Hail-Instance); start %[5]s's again: home
Ctrl-C stops everything.

`, rs.URL(first), rs.URL(second), s.Route("echo", "say"), s.DiscoveryInstances(), first, second)
}
