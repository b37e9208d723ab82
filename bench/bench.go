// Package bench measures hail's request path side by side with plain NATS
// request-reply, in one run, with the same payload, concurrency and
// instances: plain NATS to the service's queue group (the limit), through
// a router (hail.route.*), and client-side routing (router.Client).
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/embedded"
	"github.com/hailsd/hail/credentials"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/echo"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/instance"
	"github.com/hailsd/hail/router"
)

// Modes, in the order they are measured.
const (
	ModePlain  = "plain"
	ModeRouter = "router"
	ModeClient = "client"
)

// Modes lists every mode.
var Modes = []string{ModePlain, ModeRouter, ModeClient}

// Config is one benchmark run.
type Config struct {
	// URL of a NATS server with JetStream; empty starts an embedded one.
	URL         string
	Instances   int           // echo instances; default 3
	Concurrency int           // requests in flight; default 32
	Payload     int           // bytes per request; default 128
	Duration    time.Duration // measured time per mode; default 3s
	Warmup      time.Duration // unmeasured time per mode first; default 500ms
	// Rounds splits each mode's Duration into turns taken in rotation
	// (plain, router, client, plain, ...), so drift in the machine's load
	// falls on every mode alike; default 5.
	Rounds int
	// Secure measures a second region beside the first, on an embedded
	// server with TLS and the roles' users (auth.conf from `secure
	// init`), every part connected as its own user: plain and routed
	// requests, taken in the same rotation, so the cost of TLS and
	// authorization is a ratio of one run. Only routed requests: the
	// caller's user may not publish to a service's queue group.
	Secure bool
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Instances <= 0 {
		c.Instances = 3
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 32
	}
	if c.Payload <= 0 {
		c.Payload = 128
	}
	if c.Duration <= 0 {
		c.Duration = 3 * time.Second
	}
	if c.Warmup <= 0 {
		c.Warmup = 500 * time.Millisecond
	}
	if c.Rounds <= 0 {
		c.Rounds = 5
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Result is one mode's figures.
type Result struct {
	Mode       string
	Requests   int
	Errors     int
	Throughput float64 // requests per second
	P50, P99   time.Duration
}

// Stack is everything a run needs: a NATS server (unless given), a
// discovery node, echo instances, a router, a client and a caller's
// connection, each with its own connection as in production.
type Stack struct {
	cfg    Config
	secure bool // TLS and a user per role
	caller *nats.Conn
	client *router.Client
	url    string         // of the NATS server
	router *router.Router // for its ingress
	stop   []func()
}

// Start brings the stack up and waits until every mode answers.
func Start(ctx context.Context, cfg Config) (*Stack, error) {
	cfg.setDefaults()
	s := &Stack{cfg: cfg}
	if err := s.start(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Stack) start(ctx context.Context) error {
	url := s.cfg.URL
	var creds *credentials.Dir
	if url == "" || s.secure {
		dir, err := os.MkdirTemp("", "hail-bench-")
		if err != nil {
			return err
		}
		so := embedded.ServerOptions{Name: "hail-bench", Port: -1, StoreDir: dir}
		if s.secure {
			if creds, err = credentials.Write(filepath.Join(dir, "secure"), credentials.Options{Services: []string{"echo"}, Hosts: []string{"127.0.0.1", "localhost"}}); err != nil {
				return err
			}
			sec := embedded.Security{Cert: creds.File(credentials.ServerCertFile), Key: creds.File(credentials.ServerKeyFile), AuthFile: creds.File(credentials.AuthConfFile)}
			if so.Configure, err = sec.Configure(); err != nil {
				return err
			}
		}
		srv, err := embedded.StartServer(so)
		if err != nil {
			return err
		}
		s.stop = append(s.stop, func() { srv.Shutdown(); srv.WaitForShutdown(); _ = os.RemoveAll(dir) })
		url = srv.ClientURL()
	}
	s.url = url
	connect := func(name, role string) (*nats.Conn, error) {
		var opts []nats.Option
		if creds != nil {
			var err error
			if opts, err = creds.Options(role); err != nil {
				return nil, err
			}
		}
		// bus.Connect retries: a bcrypt check and a TLS handshake on a
		// busy machine can outlast one attempt's timeout.
		nc, err := bus.Connect(ctx, bus.ConnectOptions{URL: url, Name: name, Extra: opts})
		if err != nil {
			return nil, fmt.Errorf("connect %s: %w", name, err)
		}
		s.stop = append(s.stop, nc.Close)
		return nc, nil
	}
	dnc, err := connect("bench-discovery", "discovery")
	if err != nil {
		return err
	}
	kv, err := bus.EnsureBuckets(ctx, dnc, bus.BucketOptions{})
	if err != nil {
		return err
	}
	node, err := discovery.New(dnc, kv, discovery.Config{Logger: s.cfg.Logger})
	if err != nil {
		return err
	}
	s.run(node.Run)
	select {
	case <-node.Serving():
	case <-ctx.Done():
		return ctx.Err()
	}
	for i := range s.cfg.Instances {
		nc, err := connect(fmt.Sprintf("bench-echo-%d", i), "svc-echo")
		if err != nil {
			return err
		}
		inst, err := echo.Start(ctx, nc, instance.Config{Service: "echo", Capacity: 1024, Scoped: s.secure, Logger: s.cfg.Logger})
		if err != nil {
			return err
		}
		s.stop = append(s.stop, func() { _ = inst.Shutdown(context.Background()) })
	}
	rnc, err := connect("bench-router", "router")
	if err != nil {
		return err
	}
	rt, err := router.New(rnc, router.Config{Table: router.TableConfig{Logger: s.cfg.Logger}})
	if err != nil {
		return err
	}
	s.router = rt
	s.run(rt.Run)
	if !s.secure {
		// router.Client reads the registry and reaches instances itself:
		// no role of the secured region is that (it is a router in a
		// caller's process).
		cnc, err := connect("bench-client", "")
		if err != nil {
			return err
		}
		if s.client, err = router.NewClient(ctx, cnc, router.TableConfig{Logger: s.cfg.Logger}); err != nil {
			return err
		}
		s.stop = append(s.stop, func() { _ = s.client.Close() })
	}
	if s.caller, err = connect("bench-caller", "caller"); err != nil {
		return err
	}
	// Every mode must reach every instance before anything is measured.
	deadline := time.Now().Add(30 * time.Second)
	for _, mode := range s.modes() {
		do := s.request(mode, make([]byte, s.cfg.Payload))
		for seen := map[string]bool{}; len(seen) < s.cfg.Instances; {
			if time.Now().After(deadline) {
				return fmt.Errorf("mode %s reached %d of %d instances within 30s", mode, len(seen), s.cfg.Instances)
			}
			m, err := do(ctx)
			if err == nil {
				seen[m.Header.Get(events.HeaderInstance)] = true
			}
		}
	}
	return nil
}

// modes are the modes this stack measures.
func (s *Stack) modes() []string {
	if s.secure {
		// A caller may route, not publish to a service's queue group.
		return []string{ModeRouter}
	}
	return Modes
}

// run runs f until Close.
func (s *Stack) run(f func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f(ctx)
	}()
	s.stop = append(s.stop, func() { cancel(); <-done })
}

// Close stops everything, last started first.
func (s *Stack) Close() {
	for i := len(s.stop) - 1; i >= 0; i-- {
		s.stop[i]()
	}
	s.stop = nil
}

// request returns one mode's way of sending a request.
func (s *Stack) request(mode string, payload []byte) func(context.Context) (*nats.Msg, error) {
	var sub events.Subjects
	check := func(m *nats.Msg, err error) (*nats.Msg, error) {
		if err != nil {
			return nil, err
		}
		if code, text, isErr := events.ReplyError(m); isErr {
			return nil, fmt.Errorf("%d %s", code, text)
		}
		return m, nil
	}
	switch mode {
	case ModePlain:
		return func(context.Context) (*nats.Msg, error) {
			return check(s.caller.Request(sub.Svc("echo", "say"), payload, 5*time.Second))
		}
	case ModeRouter:
		return func(context.Context) (*nats.Msg, error) {
			return check(s.caller.Request(sub.Route("echo", "say"), payload, 5*time.Second))
		}
	case ModeClient:
		return func(ctx context.Context) (*nats.Msg, error) {
			return check(s.client.Request(ctx, "echo", "say", payload))
		}
	}
	return func(context.Context) (*nats.Msg, error) { return nil, fmt.Errorf("unknown mode %q", mode) }
}

// Measure sends requests of one mode from Concurrency goroutines: for d,
// or n requests in all when n > 0.
func (s *Stack) Measure(ctx context.Context, mode string, d time.Duration, n int) (Result, error) {
	var t tally
	if err := s.measure(ctx, mode, d, n, &t); err != nil {
		return Result{}, err
	}
	return t.result(mode)
}

// tally accumulates one mode's turns.
type tally struct {
	lats    []time.Duration
	errors  int
	elapsed time.Duration
}

func (t *tally) result(mode string) (Result, error) {
	if len(t.lats) == 0 {
		return Result{}, fmt.Errorf("%s: no request succeeded", mode)
	}
	slices.Sort(t.lats)
	return Result{
		Mode: mode, Requests: len(t.lats), Errors: t.errors,
		Throughput: float64(len(t.lats)) / t.elapsed.Seconds(),
		P50:        t.lats[len(t.lats)/2], P99: t.lats[len(t.lats)*99/100],
	}, nil
}

func (s *Stack) measure(ctx context.Context, mode string, d time.Duration, n int, into *tally) error {
	do := s.request(mode, make([]byte, s.cfg.Payload))
	return load(ctx, s.cfg.Concurrency, func(ctx context.Context) error { _, err := do(ctx); return err }, d, n, into)
}

// load calls do from concurrency goroutines, for d, or n calls in all
// when n > 0, and adds the latencies of those that succeed to into.
func load(ctx context.Context, concurrency int, do func(context.Context) error, d time.Duration, n int, into *tally) error {
	var (
		sent   atomic.Int64
		errs   atomic.Int64
		mu     sync.Mutex
		stopAt = time.Now().Add(d)
	)
	more := func() bool {
		if n > 0 {
			return sent.Add(1) <= int64(n)
		}
		return time.Now().Before(stopAt)
	}
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	for range concurrency {
		g.Go(func() error {
			var mine []time.Duration
			for more() && gctx.Err() == nil {
				t := time.Now()
				if err := do(gctx); err != nil {
					errs.Add(1)
					continue
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			into.lats = append(into.lats, mine...)
			mu.Unlock()
			return nil
		})
	}
	_ = g.Wait()
	into.elapsed += time.Since(start)
	into.errors += int(errs.Load())
	return ctx.Err()
}

// SecureSuffix marks the modes of the secured region in results.
const SecureSuffix = " (TLS+auth)"

// Run starts a stack (two with Secure), warms every mode up, then
// measures the modes in rotation.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	cfg.setDefaults()
	s, err := Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	type turn struct {
		s     *Stack
		mode  string
		label string
	}
	var turns []turn
	for _, mode := range Modes {
		turns = append(turns, turn{s, mode, mode})
	}
	if cfg.Secure {
		sec := &Stack{cfg: cfg, secure: true}
		sec.cfg.URL = ""
		if err := sec.start(ctx); err != nil {
			sec.Close()
			return nil, fmt.Errorf("secured region: %w", err)
		}
		defer sec.Close()
		for _, mode := range sec.modes() {
			turns = append(turns, turn{sec, mode, mode + SecureSuffix})
		}
	}
	for _, tn := range turns {
		if err := tn.s.measure(ctx, tn.mode, cfg.Warmup, 0, &tally{}); err != nil {
			return nil, fmt.Errorf("warm up %s: %w", tn.label, err)
		}
	}
	tallies := make([]tally, len(turns))
	for range cfg.Rounds {
		for i, tn := range turns {
			if err := tn.s.measure(ctx, tn.mode, cfg.Duration/time.Duration(cfg.Rounds), 0, &tallies[i]); err != nil {
				return nil, fmt.Errorf("measure %s: %w", tn.label, err)
			}
		}
	}
	out := make([]Result, len(turns))
	for i, tn := range turns {
		if out[i], err = tallies[i].result(tn.label); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Write prints results as a Markdown table with each mode's ratio to plain
// NATS.
func Write(w io.Writer, cfg Config, results []Result) {
	cfg.setDefaults()
	fmt.Fprintf(w, "%d echo instances, %d requests in flight, %d-byte payload, %s per mode in %d turns\n\n",
		cfg.Instances, cfg.Concurrency, cfg.Payload, cfg.Duration, cfg.Rounds)
	fmt.Fprintln(w, "| path | req/s | × plain | p50 | p99 | errors |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
	var base float64
	for _, r := range results {
		if r.Mode == ModePlain {
			base = r.Throughput
		}
	}
	by := map[string]Result{}
	for _, r := range results {
		by[r.Mode] = r
		ratio := "-"
		if base > 0 {
			ratio = fmt.Sprintf("%.2f", r.Throughput/base)
		}
		fmt.Fprintf(w, "| %s | %.0f | %s | %s | %s | %d |\n", r.Mode, r.Throughput, ratio,
			r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Errors)
	}
	for _, mode := range []string{ModeRouter} {
		if sec, ok := by[mode+SecureSuffix]; ok && by[mode].Throughput > 0 {
			fmt.Fprintf(w, "\n%s requests with TLS and authorization: %.2f× those without\n", mode, sec.Throughput/by[mode].Throughput)
		}
	}
}
