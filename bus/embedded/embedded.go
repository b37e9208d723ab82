// Package embedded runs NATS servers with JetStream inside a hail process:
// one for the dev stack, an in-process cluster for tests of the region. It
// is apart from package bus so that programs which only connect do not
// link the server.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus"
)

// ServerOptions describes an embedded NATS server with JetStream.
type ServerOptions struct {
	Name     string // server name; required and unique in a cluster
	Host     string // client listen host; default 127.0.0.1
	Port     int    // client port; -1 picks a free one
	StoreDir string // JetStream storage
	// Cluster, when Cluster.Name is set, joins the server to a cluster.
	Cluster ClusterOptions
	// HTTPPort enables the monitoring endpoint when > 0.
	HTTPPort int
	// MaxPayload overrides the server's 1 MiB message limit when > 0.
	MaxPayload int32
	// Logger receives the server's own log; nil keeps it quiet.
	Logger *slog.Logger
	// HTTPHost is where monitoring listens; default 127.0.0.1.
	HTTPHost string
	// ProfPort, when not 0, serves nats-server's profiles (Go's
	// net/http/pprof, under /debug/pprof/) on that port; -1 picks a free
	// one (ProfilerAddr says which). nats-server binds it on Host, the
	// client host, not on HTTPHost, and serves it to anyone who reaches
	// it: no authorization guards it.
	ProfPort int
	// Configure, when set, finishes the server's options (TLS, accounts
	// and users) before it starts.
	Configure func(*server.Options)
	// Region is the server's JetStream domain (PROTOCOL v1.5); empty:
	// none.
	Region string
	// Leaf joins the region to others.
	Leaf LeafOptions
	// BeforeClients, when set, runs as soon as the starting server takes
	// in-process connections, while it still recovers JetStream and
	// before it listens for clients; it is tried again until it succeeds
	// or clientsWait passes, when the start fails with its error. The
	// auth callout starts there: a client whose connect reached the
	// server before the callout subscribed waited out the whole
	// authorization timeout and was refused, and its retry came a
	// doubled reconnect window later (2,000 identities after a restart:
	// about one such client a restart, each back after 10-21 s where the
	// others were back in 6). nats-server has no hook between enabling
	// JetStream and listening: BeforeClients wins that race by the time
	// JetStream takes to start (its first try comes a millisecond after
	// the server runs), it is not promised; a start that ends first
	// still runs it once, right after.
	BeforeClients func(*server.Server) error
}

// clientsWait bounds the wait for a server to take in-process
// connections, and then to be ready for clients.
const clientsWait = 10 * time.Second

// ClusterOptions places a server in a cluster.
type ClusterOptions struct {
	Name   string
	Host   string
	Port   int
	Routes []string // nats-route://host:port of every peer
	// Advertise is the route address the server gossips to its peers
	// (default: its listen address). Peers that learn of it connect
	// there directly ("implicit routes").
	Advertise string
}

// StartServer starts an embedded server and waits until it accepts clients.
func StartServer(o ServerOptions) (*server.Server, error) {
	host := o.Host
	if host == "" {
		host = "127.0.0.1"
	}
	httpHost := o.HTTPHost
	if httpHost == "" {
		httpHost = "127.0.0.1"
	}
	opts := &server.Options{
		ServerName: o.Name,
		Host:       host,
		Port:       o.Port,
		HTTPHost:   httpHost,
		HTTPPort:   o.HTTPPort,
		ProfPort:   o.ProfPort,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true,
		NoLog:      o.Logger == nil,
		MaxPayload: o.MaxPayload,
		// A client whose connect waits long for its authorization (a
		// bcrypt check on a busy server, a burst of reconnects after a
		// restart: PROTOCOL v1.6 "Reconnect storms") would otherwise fail
		// on the server's first PING after ~2 s, before it is in.
		DisableShortFirstPing: true,
		// And the server waits 10 s, not 2, for an authorization: the
		// auth callout's queue may hold a connect that long while a
		// region comes back, and a connect refused comes back to the
		// same queue a doubled reconnect window later. 2,000 identities
		// after a restart, load 12 on 2 cores, with 5 s: all back in
		// 7.6 s and none refused, against 29.5 s and 2,870 refused with
		// 2 s (discovery's TestIdentitiesRestart); with 5 s on a machine
		// shared with a test run, 35 refused a restart and the last back
		// after 21 s. A client that holds a connection without sending
		// its CONNECT holds it that long too.
		AuthTimeout: 10,
	}
	if o.Cluster.Name != "" {
		opts.Cluster = server.ClusterOpts{Name: o.Cluster.Name, Host: o.Cluster.Host, Port: o.Cluster.Port, Advertise: o.Cluster.Advertise}
		for _, r := range o.Cluster.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("route %q: %w", bus.RedactURL(r), bus.RedactError(err, r))
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	if err := configureRegion(o, opts); err != nil {
		return nil, err
	}
	if o.Configure != nil {
		o.Configure(opts)
	}
	if err := withDefaultAccounts(opts); err != nil {
		return nil, err
	}
	bindLeafAccounts(opts)
	var probeCreds []nats.Option
	if o.Region != "" && o.Leaf.linked() {
		probeCreds = addProbeUser(opts, o.Leaf.Prefix)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("new NATS server: %w", err)
	}
	if o.Logger != nil {
		s.SetLoggerV2(serverLog{o.Logger.With("component", "nats-server")}, false, false, false)
	}
	if o.BeforeClients == nil {
		s.Start()
	} else if err := startBeforeClients(s, o.BeforeClients); err != nil {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, err
	}
	if !s.ReadyForConnections(clientsWait) {
		s.Shutdown()
		return nil, errors.New("NATS server not ready for connections after 10s")
	}
	// nats-server only logs a profiler port it cannot have, and serves
	// on without it: asked for, it fails the start here instead.
	if o.ProfPort != 0 && s.ProfilerAddr() == nil {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("NATS server profiler: cannot listen on %s", net.JoinHostPort(host, strconv.Itoa(o.ProfPort)))
	}
	if o.Region != "" && o.Leaf.linked() {
		log := o.Logger
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		if err := startLinkChecker(s, o, probeCreds, log.With("component", "region-links")); err != nil {
			s.Shutdown()
			return nil, err
		}
	}
	return s, nil
}

// startBeforeClients starts s and runs before as soon as s takes
// in-process connections: Start enables JetStream (recovering its store)
// before it listens for clients, and before runs meanwhile. It returns
// when Start has, or with before's last error if it never succeeded.
func startBeforeClients(s *server.Server, before func(*server.Server) error) error {
	started := make(chan struct{})
	go func() {
		defer close(started)
		s.Start()
	}()
	deadline := time.Now().Add(clientsWait)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	err := errors.New("the server never ran")
	for {
		over := false
		select {
		case <-started:
			over = true // it listens, or it failed: one last try
		default:
		}
		if s.Running() {
			if err = before(s); err == nil {
				<-started
				return nil
			}
		}
		if over || time.Now().After(deadline) {
			<-started
			return fmt.Errorf("before clients: %w", err)
		}
		select {
		case <-tick.C:
		case <-started:
		}
	}
}

// serverLog adapts slog to the server's logger.
type serverLog struct{ l *slog.Logger }

func (s serverLog) Noticef(f string, v ...any) { s.l.Info(fmt.Sprintf(f, v...)) }
func (s serverLog) Warnf(f string, v ...any)   { s.l.Warn(fmt.Sprintf(f, v...)) }
func (s serverLog) Fatalf(f string, v ...any)  { s.l.Error(fmt.Sprintf(f, v...)) }
func (s serverLog) Errorf(f string, v ...any)  { s.l.Error(fmt.Sprintf(f, v...)) }
func (s serverLog) Debugf(f string, v ...any)  { s.l.Debug(fmt.Sprintf(f, v...)) }
func (s serverLog) Tracef(f string, v ...any)  { s.l.Debug(fmt.Sprintf(f, v...)) }

// Cluster is an in-process cluster of JetStream servers on loopback. Its
// ports are fixed when it is made, so a stopped server can be restarted on
// the same addresses with its store intact.
type Cluster struct {
	Servers []*server.Server
	opts    []ServerOptions
	// proxies[i][j] carries server i's route to server j, when the cluster
	// was started partitionable.
	proxies [][]*proxy
}

// StartCluster starts n servers named <name>-0..n-1 with stores under dir and
// waits until JetStream has a meta leader that every server follows.
func StartCluster(ctx context.Context, name string, n int, dir string) (*Cluster, error) {
	return startCluster(ctx, name, n, dir, false)
}

// StartPartitionableCluster is StartCluster with every route between two
// servers carried by a TCP proxy, so that Cut can partition a server off.
func StartPartitionableCluster(ctx context.Context, name string, n int, dir string) (*Cluster, error) {
	return startCluster(ctx, name, n, dir, true)
}

func startCluster(ctx context.Context, name string, n int, dir string, proxied bool) (*Cluster, error) {
	ports, err := FreeLoopbackPorts(2 * n)
	if err != nil {
		return nil, err
	}
	c := &Cluster{}
	routesOf := func(int) []string {
		routes := make([]string, n)
		for j := range n {
			routes[j] = "nats-route://127.0.0.1:" + strconv.Itoa(ports[n+j])
		}
		return routes
	}
	if proxied {
		c.proxies = make([][]*proxy, n)
		for i := range n {
			c.proxies[i] = make([]*proxy, n)
			for j := range n {
				if i == j {
					continue
				}
				p, err := newProxy("127.0.0.1:" + strconv.Itoa(ports[n+j]))
				if err != nil {
					c.Shutdown()
					return nil, fmt.Errorf("route proxy: %w", err)
				}
				c.proxies[i][j] = p
			}
		}
		routesOf = func(i int) []string {
			var routes []string
			for j, p := range c.proxies[i] {
				if j != i {
					routes = append(routes, "nats-route://"+p.addr())
				}
			}
			return routes
		}
	}
	for i := range n {
		o := ServerOptions{
			Name:     fmt.Sprintf("%s-%d", name, i),
			Port:     ports[i],
			StoreDir: filepath.Join(dir, strconv.Itoa(i)),
			Cluster:  ClusterOptions{Name: name, Host: "127.0.0.1", Port: ports[n+i], Routes: routesOf(i)},
		}
		if proxied {
			// Every route is configured, through its proxy. A server
			// must not learn a peer's real address by gossip and connect
			// around the proxy, so what it learns leads nowhere.
			o.Cluster.Advertise = "127.0.0.1:1"
		}
		s, err := StartServer(o)
		if err != nil {
			c.Shutdown()
			return nil, fmt.Errorf("start %s: %w", o.Name, err)
		}
		c.Servers = append(c.Servers, s)
		c.opts = append(c.opts, o)
	}
	if err := c.WaitReady(ctx); err != nil {
		c.Shutdown()
		return nil, err
	}
	return c, nil
}

// URLs is a comma-separated client URL list of every server.
func (c *Cluster) URLs() string {
	u := ""
	for i, o := range c.opts {
		if i > 0 {
			u += ","
		}
		u += "nats://127.0.0.1:" + strconv.Itoa(o.Port)
	}
	return u
}

// ClientURL is server i's client URL followed by the others', so a client
// that connects with it (and nats.DontRandomize) starts on server i and
// fails over to the rest.
func (c *Cluster) ClientURL(i int) string {
	u := "nats://127.0.0.1:" + strconv.Itoa(c.opts[i].Port)
	for j, o := range c.opts {
		if j != i {
			u += ",nats://127.0.0.1:" + strconv.Itoa(o.Port)
		}
	}
	return u
}

// Stop shuts server i down and waits until it is gone.
func (c *Cluster) Stop(i int) {
	s := c.Servers[i]
	if s == nil {
		return
	}
	s.Shutdown()
	s.WaitForShutdown()
	c.Servers[i] = nil
}

// Restart starts server i again on its old ports and store.
func (c *Cluster) Restart(i int) error {
	c.Stop(i)
	s, err := StartServer(c.opts[i])
	if err != nil {
		return fmt.Errorf("restart %s: %w", c.opts[i].Name, err)
	}
	c.Servers[i] = s
	return nil
}

// Cut partitions server i from the others: every route between them is
// dropped and refused until Heal. Clients of server i stay connected to
// it. Only for a cluster made by StartPartitionableCluster.
func (c *Cluster) Cut(i int) { c.setCut(i, true) }

// Heal undoes Cut.
func (c *Cluster) Heal(i int) { c.setCut(i, false) }

func (c *Cluster) setCut(i int, cut bool) {
	if c.proxies == nil {
		panic("embedded: Cut on a cluster without route proxies")
	}
	for j := range c.proxies {
		if j == i {
			continue
		}
		c.proxies[i][j].setCut(cut)
		c.proxies[j][i].setCut(cut)
	}
}

// Shutdown stops every server.
func (c *Cluster) Shutdown() {
	for i := range c.Servers {
		c.Stop(i)
	}
	for _, ps := range c.proxies {
		for _, p := range ps {
			if p != nil {
				p.close()
			}
		}
	}
}

// WaitReady waits until the running servers agree on a JetStream meta
// leader and a client can reach the JetStream API. Elections usually take
// under a second but can take several, so this waits on the servers' own
// state instead of sleeping.
func (c *Cluster) WaitReady(ctx context.Context) error {
	for {
		if err := c.ready(ctx); err == nil {
			return nil
		} else if ctx.Err() != nil {
			return fmt.Errorf("cluster not ready: %w (last: %v)", ctx.Err(), err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(25 * time.Millisecond):
		}
	}
}

func (c *Cluster) ready(ctx context.Context) error {
	leaders := 0
	for _, s := range c.Servers {
		if s == nil {
			continue
		}
		if !s.JetStreamIsCurrent() {
			return fmt.Errorf("%s is not current with the meta leader", s.Name())
		}
		if s.JetStreamIsLeader() {
			leaders++
		}
	}
	if leaders != 1 {
		return fmt.Errorf("%d meta leaders", leaders)
	}
	nc, err := nats.Connect(c.URLs(), nats.Timeout(time.Second))
	if err != nil {
		return err
	}
	defer nc.Close()
	reqCtx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = nc.RequestWithContext(reqCtx, "$JS.API.INFO", nil)
	return err
}

// FreeLoopbackPorts reserves n distinct loopback ports and releases them
// for the caller to bind; a collision in between is possible but rare, and
// surfaces as a start error rather than a hang. They are chosen below the
// kernel's ephemeral range: a port the kernel handed out would be given
// again as the source port of some outgoing connection, and the server
// meant to listen on it would find it taken.
func FreeLoopbackPorts(n int) ([]int, error) {
	low, high := 15000, ephemeralLow()
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries == 100*n {
			return nil, fmt.Errorf("reserve port: no free loopback port in %d..%d after %d tries", low, high, tries)
		}
		port := low + rand.N(high-low)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // taken, or held by this call already
		}
		ls = append(ls, l)
		ports = append(ports, port)
	}
	return ports, nil
}

// ephemeralLow is where the kernel's ephemeral ports start (Linux; 32768
// elsewhere, the common default).
func ephemeralLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(data)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 16000 {
				return n
			}
		}
	}
	return 32768
}
