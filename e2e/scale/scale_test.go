// Package scale measures a region at tens of thousands of instances, each
// part a process of its own: a 3-node NATS cluster, three discovery nodes,
// a router, and services/swarm generating the instances, as hail's SDK
// (mode sdk) or as clients written from PROTOCOL v1 alone (mode v1). It is
// a benchmark, run on purpose:
//
//	go test ./e2e/scale -run '^$' -bench Region -benchtime 1x -timeout 60m -sizes 10000,50000 -modes sdk,v1
package scale

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/proctest"
)

var (
	sizes        = flag.String("sizes", "10000", "instance counts to measure, comma-separated")
	modes        = flag.String("modes", "sdk,v1", "swarm modes to measure, comma-separated: sdk (hail's rules), v1 (PROTOCOL v1 alone)")
	window       = flag.Duration("window", 60*time.Second, "the steady window")
	silent       = flag.Int("silent", 100, "instances silenced in each of the two silences, during registration and after the window")
	connections  = flag.Int("connections", 8, "the swarm's NATS connections")
	restart      = flag.Bool("restart", true, "restart a discovery node after the silence test")
	natsRestarts = flag.Int("nats-restarts", 1, "NATS servers of the cluster restarted, one after the other, after the node restart")
	inFlight     = flag.Int("in-flight", 256, "sdk mode: the swarm's announces waiting for an answer at once (its in_flight); every SDK instance of a real fleet has its own one, so a fleet starting at once has as many as it has instances")
	programsFrom = flag.String("programs-from", "", "a directory of prebuilt programs (nats, discovery, router, swarm: go build -o DIR/ ./services/...), each found there used instead of this checkout's build: to measure one program of another commit beside the others of this one")
	servers      = flag.Int("servers", 3, "NATS servers: 3 (a cluster, hail_instances with 3 replicas) or 1 (the setup of the tables measured before [storm]; no NATS restart)")
	profiles     = flag.Bool("pprof", false, "serve Go's profiles: http.pprof on the discovery nodes, the router and the swarm, a prof_port on each NATS server; their addresses are printed at the start")
)

var (
	buildOnce sync.Once
	bins      string
	buildErr  error
)

func build(b *testing.B) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hail-scale-")
		if err != nil {
			buildErr = err
			return
		}
		bins = dir
		buildErr = proctest.Build("../..", dir+string(filepath.Separator), "./services/nats", "./services/discovery", "./services/router", "./services/swarm")
		if buildErr == nil && *programsFrom != "" {
			buildErr = useProgramsFrom(*programsFrom, dir)
		}
	})
	if buildErr != nil {
		b.Fatal(buildErr)
	}
	return bins
}

// useProgramsFrom copies over dir's builds the programs from that from
// has, and says which.
func useProgramsFrom(from, dir string) error {
	for _, p := range []string{"nats", "discovery", "router", "swarm"} {
		data, err := os.ReadFile(filepath.Join(from, p))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("-programs-from: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), data, 0o755); err != nil {
			return fmt.Errorf("-programs-from: %w", err)
		}
		fmt.Printf("-programs-from: %s from %s\n", p, from)
	}
	return nil
}

func BenchmarkRegion(b *testing.B) {
	b.Cleanup(func() {
		if bins != "" {
			_ = os.RemoveAll(bins)
		}
	})
	var ms []string
	for _, m := range strings.Split(*modes, ",") {
		m = strings.TrimSpace(m)
		if m != "sdk" && m != "v1" {
			b.Fatalf("-modes: %q is neither sdk nor v1", m)
		}
		ms = append(ms, m)
	}
	for _, text := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(text))
		if err != nil || n < 1 {
			b.Fatalf("-sizes: %q", text)
		}
		for _, m := range ms {
			b.Run(fmt.Sprintf("instances=%d/mode=%s", n, m), func(b *testing.B) {
				for range b.N {
					measure(b, n, m == "v1")
				}
			})
		}
	}
}

// targets are what a run must hold, from the [scale] issue (hail's SDK,
// any size), [storm] (v1 clients; 100,000 SDK instances) and [detect] (a
// NATS server restarted). Zero means no bound.
type targets struct {
	registration, silence, routedP99 time.Duration
	// reannounces bounds the re-announces until the end of the window, as
	// a fraction of the instances (below 1: fewer than instances).
	reannounces float64
	// restartAnnounces bounds announces per instance after a discovery
	// node restarted.
	restartAnnounces float64
}

func targetsFor(n int, v1 bool) targets {
	switch {
	case v1 && n <= 10_000:
		return targets{registration: 5 * time.Second, silence: 4500 * time.Millisecond, routedP99: 20 * time.Millisecond, reannounces: 0.999}
	case v1:
		return targets{registration: 30 * time.Second, silence: 4500 * time.Millisecond, routedP99: 20 * time.Millisecond, reannounces: 0.999}
	case n >= 100_000:
		return targets{registration: 60 * time.Second, silence: 4500 * time.Millisecond, restartAnnounces: 1.1}
	default:
		return targets{registration: 30 * time.Second, silence: 5 * time.Second, restartAnnounces: 1.1}
	}
}

// load is the machine's load average (1, 5, 15 minutes), said beside
// every figure: the machine is shared.
func load() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// region is the processes of one measurement.
type region struct {
	b       *testing.B
	bins    string
	url     string // every NATS server, comma-separated
	natsEnv []map[string]string
	natsP   []*proctest.Process
	monitor []string // the NATS servers' monitoring addresses
	nodes   []*proctest.Process
	nodeEnv []map[string]string
	admin   []string // discovery nodes' HTTP addresses
	swarm   string   // its HTTP address
	swarmP  *proctest.Process
	router  *proctest.Process
	// profiled are the processes serving their profiles under -pprof,
	// "name host:port" each.
	profiled []string
	// nc is the benchmark's own connection, to server 0 alone: the
	// restarted server is another, so no health event is missed.
	nc *nats.Conn
}

// say prints a figure as it is measured: a benchmark's log is cut to ten
// lines, and a failing run's figures say why it failed.
func (r *region) say(format string, args ...any) {
	fmt.Printf("%s %s: %s\n", time.Now().UTC().Format("15:04:05.000"), r.b.Name(), fmt.Sprintf(format, args...))
}

func (r *region) start(name, program string, env map[string]string) *proctest.Process {
	return proctest.Start(r.b, name, filepath.Join(r.bins, program), env)
}

// profile turns http.pprof on in env, a hail program's, under -pprof, and
// notes its address.
func (r *region) profile(name string, env map[string]string) map[string]string {
	if *profiles {
		env["HAIL_HTTP_PPROF"] = "true"
		r.profiled = append(r.profiled, name+" "+env["HAIL_HTTP_ADDR"])
	}
	return env
}

// startNATS runs a 3-node cluster of services/nats processes (or one
// server, -servers 1), with monitoring, and waits until JetStream answers
// through it.
func (r *region) startNATS() {
	b := r.b
	var urls, routes []string
	type ports struct{ client, cluster, monitor, prof int }
	var ps []ports
	for range *servers {
		p := ports{bustest.FreePort(b), bustest.FreePort(b), bustest.FreePort(b), bustest.FreePort(b)}
		ps = append(ps, p)
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", p.client))
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p.cluster))
	}
	r.url = strings.Join(urls, ",")
	for i, p := range ps {
		env := map[string]string{"HAIL_NAME": fmt.Sprintf("nats-%d", i), "HAIL_LISTEN": fmt.Sprintf("127.0.0.1:%d", p.client),
			"HAIL_STORE_DIR": b.TempDir(), "HAIL_LOG_LEVEL": "warn", "HAIL_MONITOR_PORT": strconv.Itoa(p.monitor)}
		if len(ps) > 1 {
			env["HAIL_CLUSTER_NAME"], env["HAIL_CLUSTER_LISTEN"], env["HAIL_CLUSTER_ROUTES"] = "hail-scale", fmt.Sprintf("127.0.0.1:%d", p.cluster), strings.Join(routes, ",")
		}
		if *profiles {
			// nats-server serves them on the client host, 127.0.0.1.
			env["HAIL_PROF_PORT"] = strconv.Itoa(p.prof)
			r.profiled = append(r.profiled, fmt.Sprintf("nats-%d 127.0.0.1:%d", i, p.prof))
		}
		r.natsEnv = append(r.natsEnv, env)
		r.monitor = append(r.monitor, fmt.Sprintf("127.0.0.1:%d", p.monitor))
		r.natsP = append(r.natsP, r.start(fmt.Sprintf("nats-%d", i), "nats", env))
	}
	poll(b, time.Minute, 100*time.Millisecond, func() error {
		nc, err := nats.Connect(urls[0])
		if err != nil {
			return err
		}
		r.nc = nc
		return nil
	})
	b.Cleanup(r.nc.Close)
	js, err := jetstream.New(r.nc)
	if err != nil {
		b.Fatal(err)
	}
	poll(b, time.Minute, 250*time.Millisecond, func() error {
		for i, m := range r.monitor {
			v, err := varz(m)
			if err != nil {
				return err
			}
			if v.Routes < len(ps)-1 {
				return fmt.Errorf("nats-%d has %d routes", i, v.Routes)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err
	})
}

// leader is the index of the server that leads hail_instances, else of
// the JetStream meta leader, and which it is; -1 when neither is known.
func (r *region) leader() (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	js, err := jetstream.New(r.nc)
	if err != nil {
		return -1, ""
	}
	index := func(name string) int {
		for i, env := range r.natsEnv {
			if env["HAIL_NAME"] == name {
				return i
			}
		}
		return -1
	}
	if st, err := js.Stream(ctx, "KV_"+bus.InstancesBucket); err == nil && st.CachedInfo().Cluster != nil {
		if i := index(st.CachedInfo().Cluster.Leader); i > 0 {
			return i, "leader of hail_instances"
		}
	}
	var jsz struct {
		Meta struct {
			Leader string `json:"leader"`
		} `json:"meta_cluster"`
	}
	c := http.Client{Timeout: 2 * time.Second}
	if resp, err := c.Get("http://" + r.monitor[0] + "/jsz"); err == nil {
		defer resp.Body.Close()
		if json.NewDecoder(resp.Body).Decode(&jsz) == nil {
			if i := index(jsz.Meta.Leader); i > 0 {
				return i, "JetStream meta leader"
			}
		}
	}
	return -1, ""
}

// natsVarz is what the benchmark reads of a server's /varz.
type natsVarz struct {
	Connections int     `json:"connections"`
	Routes      int     `json:"routes"`
	Mem         int64   `json:"mem"`
	CPU         float64 `json:"cpu"`
}

func varz(addr string) (natsVarz, error) {
	var v natsVarz
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/varz")
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	return v, json.NewDecoder(resp.Body).Decode(&v)
}

// watch is the health events, counted from the swarm's start.
type watch struct {
	mu sync.Mutex
	// crit counts critical events of instances that were never silenced;
	// dereg their deregistered events.
	crit, dereg atomic.Int64
	// criticalAt is each silenced-service instance's first critical event
	// after its silence.
	silencedAt, criticalAt map[string]time.Time
	// whyCrit says why answering instances went critical: by service,
	// reason, node and second from the origin.
	whyCrit map[string]int
	origin  time.Time
}

func (w *watch) event(m *nats.Msg) {
	ev, err := events.DecodeHealthEvent(m.Data)
	if err != nil {
		return
	}
	switch {
	case ev.Status == events.Critical && ev.Service == "swarm-silent":
		w.mu.Lock()
		if _, ok := w.silencedAt[ev.ID]; ok {
			if _, ok := w.criticalAt[ev.ID]; !ok {
				w.criticalAt[ev.ID] = time.Now()
			}
		} else {
			// A silent instance not (yet) silenced is an answering one.
			w.crit.Add(1)
			w.whyCrit[fmt.Sprintf("%s: %s by %s at %ds (not silenced)", ev.Service, ev.Reason, short(ev.Node), int(time.Since(w.origin).Seconds()))]++
		}
		w.mu.Unlock()
	case ev.Status == events.Critical:
		w.crit.Add(1)
		w.mu.Lock()
		w.whyCrit[fmt.Sprintf("%s: %s by %s at %ds", ev.Service, ev.Reason, short(ev.Node), int(time.Since(w.origin).Seconds()))]++
		w.mu.Unlock()
	case ev.Status == events.Deregistered && ev.Service != "swarm-silent":
		w.dereg.Add(1)
	}
}

// top is the n most counted keys of m, most first.
func top(m map[string]int, n int) string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int { return m[b] - m[a] })
	var out []string
	for _, k := range keys[:min(n, len(keys))] {
		out = append(out, fmt.Sprintf("%s: %d", k, m[k]))
	}
	if len(keys) > n {
		out = append(out, fmt.Sprintf("and %d more", len(keys)-n))
	}
	return strings.Join(out, "; ")
}

func short(node string) string { return node[max(0, len(node)-8):] }

// silenced records ids silenced at at; unsilenced forgets them all.
func (w *watch) silenced(ids []string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range ids {
		w.silencedAt[id] = at
	}
}

// lastCritical is, over ids, the longest time from silence to critical,
// and how many of ids are critical.
func (w *watch) lastCritical(ids []string) (time.Duration, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var last time.Duration
	n := 0
	for _, id := range ids {
		at, ok := w.criticalAt[id]
		if !ok {
			continue
		}
		n++
		last = max(last, at.Sub(w.silencedAt[id]))
	}
	return last, n
}

func (w *watch) unsilenced() {
	w.mu.Lock()
	defer w.mu.Unlock()
	clear(w.silencedAt)
	clear(w.criticalAt)
}

func (w *watch) takeWhy() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := maps.Clone(w.whyCrit)
	clear(w.whyCrit)
	return out
}

func measure(b *testing.B, n int, v1 bool) {
	b.StopTimer()
	mode := "sdk"
	if v1 {
		mode = "v1"
	}
	want := targetsFor(n, v1)
	var missed []string
	miss := func(format string, args ...any) { missed = append(missed, fmt.Sprintf(format, args...)) }
	r := &region{b: b, bins: build(b)}
	r.startNATS()
	for i := range 3 {
		addr := fmt.Sprintf("127.0.0.1:%d", bustest.FreePort(b))
		env := r.profile(fmt.Sprintf("discovery-%d", i),
			map[string]string{"HAIL_NATS_URL": r.url, "HAIL_HTTP_ADDR": addr, "HAIL_LOG_LEVEL": "warn", "HAIL_NODE_AZ": fmt.Sprintf("az-%d", i)})
		r.nodeEnv = append(r.nodeEnv, env)
		r.admin = append(r.admin, addr)
		r.nodes = append(r.nodes, r.start(fmt.Sprintf("discovery-%d", i), "discovery", env))
	}
	r.router = r.start("router", "router", r.profile("router",
		map[string]string{"HAIL_NATS_URL": r.url, "HAIL_HTTP_ADDR": fmt.Sprintf("127.0.0.1:%d", bustest.FreePort(b)), "HAIL_LOG_LEVEL": "warn"}))
	for i, a := range r.admin {
		r.nodes[i].WaitReady(b, a)
	}
	js, err := jetstream.New(r.nc)
	if err != nil {
		b.Fatal(err)
	}
	stream := func() *jetstream.StreamInfo {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, "KV_"+bus.InstancesBucket)
		if err != nil {
			b.Fatal(err)
		}
		return st.CachedInfo()
	}
	if rep, want := stream().Config.Replicas, min(3, *servers); rep != want {
		b.Fatalf("hail_instances has %d replicas, want %d on %d servers", rep, want, *servers)
	}

	w := &watch{silencedAt: map[string]time.Time{}, criticalAt: map[string]time.Time{}, whyCrit: map[string]int{}, origin: time.Now()}
	sub, err := r.nc.Subscribe(events.Subjects{}.HealthAll(), w.event)
	if err != nil {
		b.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	b.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := r.nc.Flush(); err != nil {
		b.Fatal(err)
	}

	total := n + 2**silent
	r.swarm = fmt.Sprintf("127.0.0.1:%d", bustest.FreePort(b))
	t0 := time.Now()
	cpu0, machine0 := r.cpu(), machineCPU()
	r.swarmP = r.start("swarm", "swarm", r.profile("swarm", map[string]string{"HAIL_NATS_URL": r.url, "HAIL_HTTP_ADDR": r.swarm, "HAIL_INSTANCES": strconv.Itoa(n),
		"HAIL_SILENT": strconv.Itoa(2 * *silent), "HAIL_SERVICES": strconv.Itoa(max(1, n/100)), "HAIL_CONNECTIONS": strconv.Itoa(*connections),
		"HAIL_LOG_LEVEL": "warn", "HAIL_V1": strconv.FormatBool(v1), "HAIL_IN_FLIGHT": strconv.Itoa(*inFlight),
		// The region goes with the processes; deregistering tens of
		// thousands at the end would only slow the stop.
		"HAIL_DEREGISTER": "false"}))
	if *profiles {
		r.say("profiles (-pprof): go tool pprof 'http://<addr>/debug/pprof/profile?seconds=15', <addr> of %s", strings.Join(r.profiled, ", "))
	}
	r.say("%s, %d instances (+%d silent, silenced %d during registration and %d after): %d NATS servers, 3 discovery nodes; load %s",
		mode, n, 2**silent, *silent, *silent, *servers, load())

	// Registration. Registered is what the swarm has had acknowledged
	// (or heartbeated: an answer lost to a timeout), read from its
	// metrics. While it registers, the first silent instances registered
	// are silenced: a silence found during a storm.
	var early []string
	var earlyAt time.Duration
	var earlyRegistered float64
	// Every 10 s while it lasts, where registration stands: a run that
	// never finishes registering still says how far it got and why.
	nextSay := t0.Add(10 * time.Second)
	poll(b, 10*time.Minute, 250*time.Millisecond, func() error {
		if err := r.swarmP.Exited(); err != nil {
			b.Fatal(err)
		}
		m, err := tryScrape(r.swarm)
		if err != nil {
			return err // the swarm is starting
		}
		got := m["hail_swarm_registered"]
		if len(early) < *silent && got > 0 {
			ids := r.silence(*silent - len(early))
			w.silenced(ids, time.Now())
			if len(early) == 0 && len(ids) > 0 {
				// Registered as the silence took effect, not at the scrape
				// before it.
				earlyAt, earlyRegistered = time.Since(t0), r.swarmMetric("hail_swarm_registered")
			}
			early = append(early, ids...)
		}
		if got < float64(total) {
			if time.Now().After(nextSay) {
				nextSay = nextSay.Add(10 * time.Second)
				r.say("registering for %s: %.0f of %d registered; %.0f announces sent, %.0f answered 503, %.0f unanswered, %.0f fell due for want of a heartbeat; %d critical; load %s",
					time.Since(t0).Round(time.Second), got, total, m["hail_swarm_announces_sent_total"], m[`hail_swarm_announces_total{outcome="busy"}`],
					m[`hail_swarm_announces_total{outcome="unanswered"}`], m[`hail_swarm_announces_due_total{why="unheard"}`], w.crit.Load(), load())
			}
			return fmt.Errorf("%.0f of %d registered", got, total)
		}
		return nil
	})
	registered := time.Since(t0)
	// What registering cost, process by process: during it every
	// program of the region works for the registrations at once.
	cpu1, machine1 := r.cpu(), machineCPU()
	cpu0["swarm"] = 0 // not started at t0
	var used []string
	var usedSum float64
	for _, name := range slices.Sorted(maps.Keys(cpu1)) {
		c := cpu1[name] - cpu0[name]
		usedSum += c
		used = append(used, fmt.Sprintf("%s %.2f", name, c/registered.Seconds()))
	}
	r.say("registration cores (CPU seconds a second while it lasted): %s; the region %.2f, the machine %.2f of %d; %.2f ms of the region's CPU per instance",
		strings.Join(used, ", "), usedSum/registered.Seconds(), (machine1-machine0)/registered.Seconds(), runtime.NumCPU(), 1000*usedSum/float64(total))
	// Passing in the registry: every instance but those silenced; asked
	// only every 2 s (a query over the whole registry is work for a
	// node, which would slow what is measured).
	poll(b, 5*time.Minute, 2*time.Second, func() error {
		got, passing, err := r.count()
		if err != nil {
			return err
		}
		if got < total || passing < total-len(early) {
			return fmt.Errorf("%d of %d in the registry, %d passing (%d silenced)", got, total, passing, len(early))
		}
		return nil
	})
	allPassing := time.Since(t0)
	sent0, unheard0, silencedDue0 := r.swarmMetric("hail_swarm_announces_sent_total"), r.swarmMetric(`hail_swarm_announces_due_total{why="unheard"}`),
		r.swarmMetric(`hail_swarm_announces_due_total{why="silenced"}`)
	// Re-announces: every announce the swarm sent (hail_swarm_announces_sent_total)
	// beyond each instance's first, less those of silenced instances (they
	// hear no heartbeat on purpose).
	reannReg := sent0 - float64(total) - silencedDue0
	r.say("registration: all %d registered after %s (%.0f/s), all passing in the registry after %s; %.0f announces sent, %.0f re-announces (%.2f per instance; %.0f for want of a heartbeat), %.0f answered 503; %d false critical; load %s",
		total, registered.Round(time.Millisecond), float64(total)/registered.Seconds(), allPassing.Round(time.Millisecond),
		sent0, reannReg, reannReg/float64(total), unheard0, r.swarmMetric(`hail_swarm_announces_total{outcome="busy"}`), w.crit.Load(), load())

	// The silence during registration.
	var lastEarly time.Duration
	if len(early) > 0 {
		poll(b, time.Minute, 100*time.Millisecond, func() error {
			last, got := w.lastCritical(early)
			if got < len(early) {
				return fmt.Errorf("%d of %d silenced during registration critical", got, len(early))
			}
			lastEarly = last
			return nil
		})
	}
	during := "during registration"
	if len(early) < *silent {
		during = fmt.Sprintf("during registration (only %d were registered while it lasted)", len(early))
	}
	r.say("silence %s: %d silenced at %s, when %.0f of %d were registered; the last critical %s after its silence; load %s",
		during, len(early), earlyAt.Round(time.Millisecond), earlyRegistered, total, lastEarly.Round(time.Millisecond), load())
	r.unsilence(w, total)

	// The steady window: nothing should change.
	before, swarmBefore := r.scrape(), scrapeOne(b, r.swarm)
	seq0, crit0, sent1 := stream().State.LastSeq, w.crit.Load(), r.swarmMetric("hail_swarm_announces_sent_total")
	wstart := time.Now()
	lats, errs := r.route(n, *window)
	elapsed := time.Since(wstart)
	after, swarmAfter, varzAfter := r.scrape(), scrapeOne(b, r.swarm), r.varzAll()
	writes, falseCrit, anns := stream().State.LastSeq-seq0, w.crit.Load()-crit0, r.swarmMetric("hail_swarm_announces_sent_total")-sent1
	slices.Sort(lats)
	p50, p99 := pct(lats, 50), pct(lats, 99)
	var cpu, mem, round []string
	for i := range r.admin {
		cpu = append(cpu, fmt.Sprintf("%.3f", (after[i]["process_cpu_seconds_total"]-before[i]["process_cpu_seconds_total"])/elapsed.Seconds()))
		mem = append(mem, fmt.Sprintf("%.0f", after[i]["process_resident_memory_bytes"]/(1<<20)))
		round = append(round, fmt.Sprintf("%.0f", 1000*after[i][`hail_discovery_round_duration_seconds{quantile="0.99"}`]))
	}
	var overloaded, hbSent, hbMissed float64
	for i := range r.admin {
		overloaded += after[i]["hail_discovery_rounds_overloaded_total"] - before[i]["hail_discovery_rounds_overloaded_total"]
		hbSent += after[i]["hail_discovery_heartbeats_sent_total"] - before[i]["hail_discovery_heartbeats_sent_total"]
		hbMissed += after[i]["hail_discovery_heartbeats_missed_total"] - before[i]["hail_discovery_heartbeats_missed_total"]
	}
	var natsMem, natsCPU []string
	for i := range varzAfter {
		natsMem = append(natsMem, fmt.Sprintf("%d", varzAfter[i].Mem>>20))
		natsCPU = append(natsCPU, fmt.Sprintf("%.2f", varzAfter[i].CPU/100))
	}
	reannWindow := reannReg + anns
	r.say("steady %s: %d false critical, %d KV writes, %.0f announces, %.0f overloaded rounds, %.0f of %.0f heartbeats missed; discovery cores per node %s, RSS MiB %s, round p99 ms %s; NATS cores (its own figure) %s, RSS MiB %s; swarm %.2f cores, RSS %.0f MiB; routed %d, %d errors, p50 %s, p99 %s; load %s",
		elapsed.Round(time.Second), falseCrit, writes, anns, overloaded, hbMissed, hbSent, strings.Join(cpu, "/"), strings.Join(mem, "/"), strings.Join(round, "/"),
		strings.Join(natsCPU, "/"), strings.Join(natsMem, "/"),
		(swarmAfter["process_cpu_seconds_total"]-swarmBefore["process_cpu_seconds_total"])/elapsed.Seconds(), swarmAfter["process_resident_memory_bytes"]/(1<<20),
		len(lats), errs, p50, p99, load())

	// Paging: every instance, each page under the max payload.
	pages, listed, largest := r.page(2000)
	if listed != total || int64(largest) > r.nc.MaxPayload() {
		miss("paging listed %d instances, want %d; largest page %d bytes, max payload %d", listed, total, largest, r.nc.MaxPayload())
	}
	r.say("paging: %d instances in %d pages of 2000, largest %d bytes (max payload %d)", listed, pages, largest, r.nc.MaxPayload())

	// The silence after registration.
	late := r.silence(*silent)
	w.silenced(late, time.Now())
	var lastLate time.Duration
	poll(b, time.Minute, 100*time.Millisecond, func() error {
		last, got := w.lastCritical(late)
		if got < len(late) {
			return fmt.Errorf("%d of %d silenced critical", got, len(late))
		}
		lastLate = last
		return nil
	})
	r.say("silence after registration: all %d silenced instances critical within %s; load %s", len(late), lastLate.Round(time.Millisecond), load())
	r.unsilence(w, total)
	w.takeWhy()

	if *restart {
		r.restartNode(w, n, want, miss)
	}
	for range restartsOf(*servers, *natsRestarts) {
		r.restartNATS(w, total, miss)
	}

	// The targets of the whole run.
	if registered > want.registration {
		miss("registered in %s, at most %s", registered.Round(time.Millisecond), want.registration)
	}
	if falseCrit > 0 || writes > 0 || errs > 0 {
		miss("in the window: %d false critical, %d KV writes, %d routing errors; want none", falseCrit, writes, errs)
	}
	if len(early) == 0 {
		miss("no instance silenced during registration")
	}
	if lastEarly > want.silence || lastLate > want.silence {
		miss("silence found within %s during registration, %s after; at most %s", lastEarly.Round(time.Millisecond), lastLate.Round(time.Millisecond), want.silence)
	}
	if want.routedP99 > 0 && p99 > want.routedP99 {
		miss("routed p99 %s, at most %s", p99, want.routedP99)
	}
	if want.reannounces > 0 && reannWindow >= want.reannounces*float64(total) {
		miss("%.0f re-announces until the end of the window, want fewer than the %d instances", reannWindow, total)
	}
	b.ReportMetric(registered.Seconds(), "s-registered")
	b.ReportMetric(allPassing.Seconds(), "s-passing")
	b.ReportMetric(reannWindow, "reannounces")
	b.ReportMetric(float64(falseCrit), "false-critical")
	b.ReportMetric(float64(writes), "kv-writes-steady")
	b.ReportMetric(float64(p99.Microseconds())/1000, "ms-routed-p99")
	b.ReportMetric(lastEarly.Seconds(), "s-silent-critical-registering")
	b.ReportMetric(lastLate.Seconds(), "s-silent-critical")
	if len(missed) > 0 {
		b.Errorf("%s at %d missed its targets (load %s):\n  %s", mode, n, load(), strings.Join(missed, "\n  "))
	}
}

// restartNode stops a discovery node and starts it again: its instances
// go to the others and come back, with no critical and no deregistered
// event (and, for the SDK, about one announce each at most).
func (r *region) restartNode(w *watch, n int, want targets, miss func(string, ...any)) {
	b := r.b
	crit1, dereg1, sent1 := w.crit.Load(), w.dereg.Load(), r.swarmMetric("hail_swarm_announces_sent_total")
	busy1, unheard1 := r.swarmMetric(`hail_swarm_announces_total{outcome="busy"}`), r.swarmMetric(`hail_swarm_announces_due_total{why="unheard"}`)
	stopped := time.Now()
	timeline := r.timeline(stopped)
	r.nodes[0].Stop(b)
	r.nodes[0] = r.start("discovery-0-again", "discovery", r.nodeEnv[0])
	r.nodes[0].WaitReady(b, r.admin[0])
	r.say("node restart: stopped at %ds, back and ready at %ds", int(stopped.Sub(w.origin).Seconds()), int(time.Since(w.origin).Seconds()))
	<-time.After(30 * time.Second) // the window watched, not a wait for something
	ann := r.swarmMetric("hail_swarm_announces_sent_total") - sent1
	restartCrit, restartDereg, perInstance := w.crit.Load()-crit1, w.dereg.Load()-dereg1, ann/float64(n)
	lines := timeline()
	r.say("node restart: %d critical, %d deregistered, %.0f announces (%.2f per instance) in the 30 s after, %.0f answered 503, %.0f for want of a heartbeat; load %s",
		restartCrit, restartDereg, ann, perInstance, r.swarmMetric(`hail_swarm_announces_total{outcome="busy"}`)-busy1,
		r.swarmMetric(`hail_swarm_announces_due_total{why="unheard"}`)-unheard1, load())
	for _, l := range lines {
		r.say("node restart: %s", l)
	}
	if why := w.takeWhy(); len(why) > 0 {
		r.say("node restart: critical by service, reason, node and second: %s", top(why, 20))
	}
	if restartCrit > 0 || restartDereg > 0 {
		miss("node restart: %d critical, %d deregistered; want none", restartCrit, restartDereg)
	}
	if want.restartAnnounces > 0 && perInstance > want.restartAnnounces {
		miss("node restart: %.2f announces per instance, at most %.2f", perInstance, want.restartAnnounces)
	}
}

// restartNATS stops a NATS server (SIGTERM, a real process), starts it
// again, and counts the critical events while its clients reconnect and
// for 30 s after it is back ([detect]: none), and how long until every
// client is connected again. Of the two servers the benchmark's own
// connection is not on, it stops the one with more clients; on a tie the
// one that leads hail_instances or the JetStream meta layer, the harder
// case.
func (r *region) restartNATS(w *watch, total int, miss func(string, ...any)) {
	b := r.b
	vs := r.varzAll()
	victim, why := 1, "more clients"
	if vs[2].Connections > vs[1].Connections {
		victim = 2
	}
	if i, role := r.leader(); i > 0 && vs[1].Connections == vs[2].Connections {
		victim, why = i, role
	}
	clients := 0
	for _, v := range vs {
		clients += v.Connections
	}
	crit1, dereg1, sent1 := w.crit.Load(), w.dereg.Load(), r.swarmMetric("hail_swarm_announces_sent_total")
	other := 3 - victim // the server neither the victim nor the benchmark's own
	stopped := time.Now()
	timeline := r.timeline(stopped)
	stalls := r.probe(other, stopped)
	r.natsP[victim].Stop(b)
	down := time.Since(stopped)
	// Every client connected again, on any server: the sum over the
	// servers that answer.
	var reconnected time.Duration
	poll(b, 2*time.Minute, 50*time.Millisecond, func() error {
		sum := 0
		for i, m := range r.monitor {
			if i == victim {
				continue
			}
			v, err := varz(m)
			if err != nil {
				return err
			}
			sum += v.Connections
		}
		if sum < clients {
			return fmt.Errorf("%d of %d clients connected", sum, clients)
		}
		reconnected = time.Since(stopped)
		return nil
	})
	restarted := time.Now()
	r.natsP[victim] = r.start(fmt.Sprintf("nats-%d-again", victim), "nats", r.natsEnv[victim])
	poll(b, time.Minute, 100*time.Millisecond, func() error {
		v, err := varz(r.monitor[victim])
		if err != nil {
			return err
		}
		if v.Routes < 2 {
			return fmt.Errorf("nats-%d has %d routes", victim, v.Routes)
		}
		return nil
	})
	back := time.Since(restarted)
	r.say("NATS restart: nats-%d (%s; %d of %d clients) stopped in %s; every client connected again %s after the SIGTERM; started again, routed after %s; load %s",
		victim, why, vs[victim].Connections, clients, down.Round(time.Millisecond), reconnected.Round(time.Millisecond), back.Round(time.Millisecond), load())
	<-time.After(30 * time.Second) // the window watched, not a wait for something
	restartCrit, restartDereg := w.crit.Load()-crit1, w.dereg.Load()-dereg1
	for _, l := range append(timeline(), stalls()...) {
		r.say("NATS restart: %s", l)
	}
	var passing, got int
	poll(b, time.Minute, 2*time.Second, func() error {
		var err error
		got, passing, err = r.count()
		return err
	})
	r.say("NATS restart: %d false critical, %d deregistered, %.0f announces from the SIGTERM to 30 s after the server was back; %d of %d in the registry, %d passing; load %s",
		restartCrit, restartDereg, r.swarmMetric("hail_swarm_announces_sent_total")-sent1, got, total, passing, load())
	if why := w.takeWhy(); len(why) > 0 {
		r.say("NATS restart: critical by service, reason, node and second: %s", top(why, 20))
	}
	if restartCrit > 0 || restartDereg > 0 {
		miss("NATS restart: %d false critical, %d deregistered; want none", restartCrit, restartDereg)
	}
}

// timeline watches, second by second from since, what goes wrong while
// a part restarts: the swarm's re-announces for want of a heartbeat, and
// the heartbeats the discovery nodes judged missed, the self-preservation
// rounds they held and their handovers, each node's figures summed over
// those that answer. The lines come when stop is called.
func (r *region) timeline(since time.Time) (stop func() []string) {
	series := []struct{ name, metric string }{
		{"re-announces for want of a heartbeat", `hail_swarm_announces_due_total{why="unheard"}`},
		{"heartbeats judged missed (all nodes)", "hail_discovery_heartbeats_missed_total"},
		{"self-preservation rounds", "hail_discovery_self_preservation_rounds_total"},
		{"rebalances", "hail_discovery_rebalances_total"},
	}
	sum := func() []float64 {
		out := make([]float64, len(series))
		for i, a := range append([]string{r.swarm}, r.admin...) {
			m, err := tryScrape(a)
			if err != nil {
				continue
			}
			for j, s := range series {
				if (i == 0) == strings.HasPrefix(s.metric, "hail_swarm") {
					out[j] += m[s.metric]
				}
			}
		}
		return out
	}
	// Which process burns the cores, second by second: the region's own
	// (from /proc) and the whole machine's, which is shared.
	procs := r.processes()
	cpuOf := func() (map[string]float64, float64) {
		out := map[string]float64{}
		for name, pid := range procs {
			out[name] = procCPU(pid)
		}
		return out, machineCPU()
	}
	done, result := make(chan struct{}), make(chan []string, 1)
	go func() {
		lines := make([][]string, len(series))
		var busy []string
		last := sum()
		lastCPU, lastMachine := cpuOf()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				out := make([]string, len(series))
				for i, s := range series {
					out[i] = fmt.Sprintf("%s, by second from the stop: %s", s.name, strings.Join(lines[i], " "))
				}
				out = append(out, "cores used (the machine's; the region's processes over 0.3), by second from the stop: "+strings.Join(busy, " "))
				result <- out
				return
			case <-tick.C:
			}
			at := int(time.Since(since).Seconds())
			now := sum()
			for i := range series {
				// A restarted node's counters start again from zero.
				if d := now[i] - last[i]; d > 0 {
					lines[i] = append(lines[i], fmt.Sprintf("%ds:%.0f", at, d))
				}
			}
			last = now
			cpu, machine := cpuOf()
			var hot []string
			for name, v := range cpu {
				if d := v - lastCPU[name]; d > 0.3 {
					hot = append(hot, fmt.Sprintf("%s %.1f", name, d))
				}
			}
			slices.Sort(hot)
			busy = append(busy, fmt.Sprintf("%ds:%.1f[%s]", at, machine-lastMachine, strings.Join(hot, ",")))
			lastCPU, lastMachine = cpu, machine
		}
	}()
	return func() []string {
		close(done)
		return <-result
	}
}

// probe measures, every 100 ms from since until stop is called, whether
// NATS itself stalls: a core request from server other to a responder on
// server 0 (the benchmark's own connection), and a JetStream API request
// (the info of hail_instances, with its leader). Its lines say the
// slowest of each, when, and every change of the stream's leader.
func (r *region) probe(other int, since time.Time) (stop func() []string) {
	subject := "scale.probe"
	resp, err := r.nc.Subscribe(subject, func(m *nats.Msg) { _ = m.Respond(nil) })
	if err != nil {
		r.b.Fatal(err)
	}
	if err := r.nc.Flush(); err != nil {
		r.b.Fatal(err)
	}
	nc, err := nats.Connect(strings.Split(r.url, ",")[other])
	if err != nil {
		r.b.Fatal(err)
	}
	js, err := jetstream.New(r.nc)
	if err != nil {
		r.b.Fatal(err)
	}
	type worst struct {
		d  time.Duration
		at time.Duration
	}
	done, result := make(chan struct{}), make(chan []string, 1)
	go func() {
		defer nc.Close()
		defer func() { _ = resp.Unsubscribe() }()
		var core, api worst
		var slowCore, slowAPI []string // each over 500 ms (a heartbeat's timeout)
		var leaders []string
		leader := ""
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				result <- []string{
					fmt.Sprintf("probe: slowest core request %s at %.1fs; over 500 ms at %s", core.d.Round(time.Millisecond), core.at.Seconds(), strings.Join(slowCore, " ")),
					fmt.Sprintf("probe: slowest JetStream info %s at %.1fs; over 500 ms at %s", api.d.Round(time.Millisecond), api.at.Seconds(), strings.Join(slowAPI, " ")),
					fmt.Sprintf("probe: hail_instances leader by second: %s", strings.Join(leaders, " ")),
				}
				return
			case <-tick.C:
			}
			at := time.Since(since)
			t := time.Now()
			_, err := nc.Request(subject, nil, 5*time.Second)
			if d := time.Since(t); err != nil || d > core.d {
				core = worst{d, at}
			}
			if d := time.Since(t); d > 500*time.Millisecond || err != nil {
				slowCore = append(slowCore, fmt.Sprintf("%.1fs:%s", at.Seconds(), d.Round(time.Millisecond)))
			}
			t = time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			st, err := js.Stream(ctx, "KV_"+bus.InstancesBucket)
			cancel()
			d := time.Since(t)
			if d > api.d {
				api = worst{d, at}
			}
			if d > 500*time.Millisecond || err != nil {
				slowAPI = append(slowAPI, fmt.Sprintf("%.1fs:%s", at.Seconds(), d.Round(time.Millisecond)))
			}
			if err == nil && st.CachedInfo().Cluster != nil && st.CachedInfo().Cluster.Leader != leader {
				leader = st.CachedInfo().Cluster.Leader
				leaders = append(leaders, fmt.Sprintf("%.1fs:%s", at.Seconds(), leader))
			}
		}
	}()
	return func() []string {
		close(done)
		return <-result
	}
}

// processes is the region's processes by name, with their pids.
func (r *region) processes() map[string]int {
	out := map[string]int{"router": r.router.PID()}
	if r.swarmP != nil {
		out["swarm"] = r.swarmP.PID()
	}
	for i, p := range r.natsP {
		out[fmt.Sprintf("nats-%d", i)] = p.PID()
	}
	for i, p := range r.nodes {
		out[fmt.Sprintf("discovery-%d", i)] = p.PID()
	}
	return out
}

// cpu is the CPU seconds each of the region's processes has used, and
// this benchmark's own (it follows the registry's events).
func (r *region) cpu() map[string]float64 {
	out := map[string]float64{"benchmark": procCPU(os.Getpid())}
	for name, pid := range r.processes() {
		out[name] = procCPU(pid)
	}
	return out
}

// procCPU is the CPU seconds a process has used (0 when it is gone).
func procCPU(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command, which is in parentheses.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	user, _ := strconv.ParseFloat(f[11], 64)
	sys, _ := strconv.ParseFloat(f[12], 64)
	return (user + sys) / 100 // USER_HZ
}

// machineCPU is the CPU seconds every process of the machine has used.
func machineCPU() float64 {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	var busy float64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		x, _ := strconv.ParseFloat(v, 64)
		busy += x
	}
	return busy / 100
}

// silence asks the swarm to silence up to n of its registered silent
// instances, and returns their ids.
func (r *region) silence(n int) []string {
	resp, err := http.Post(fmt.Sprintf("http://%s/silence?n=%d", r.swarm, n), "text/plain", nil)
	if err != nil {
		r.b.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Silenced []string `json:"silenced"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		r.b.Fatalf("POST /silence: %v", err)
	}
	return out.Silenced
}

// unsilence makes the silenced instances answer again and waits until
// every instance is passing, so that the next step starts from a quiet
// region.
func (r *region) unsilence(w *watch, total int) {
	resp, err := http.Post("http://"+r.swarm+"/unsilence", "text/plain", nil)
	if err != nil {
		r.b.Fatal(err)
	}
	resp.Body.Close()
	w.unsilenced()
	poll(r.b, 2*time.Minute, time.Second, func() error {
		got, passing, err := r.count()
		if err != nil {
			return err
		}
		if got != total || passing != total {
			return fmt.Errorf("%d of %d in the registry, %d passing", got, total, passing)
		}
		return nil
	})
}

func (r *region) varzAll() []natsVarz {
	out := make([]natsVarz, len(r.monitor))
	for i, m := range r.monitor {
		v, err := varz(m)
		if err != nil {
			r.b.Fatal(err)
		}
		out[i] = v
	}
	return out
}

// count sums the services query: registered and passing instances.
func (r *region) count() (int, int, error) {
	m, err := r.nc.Request(events.Subjects{}.DiscoveryServices(), []byte("{}"), 5*time.Second)
	if err != nil {
		return 0, 0, err
	}
	var svcs []events.ServiceSummary
	if err := json.Unmarshal(m.Data, &svcs); err != nil {
		return 0, 0, fmt.Errorf("services answer: %w", err)
	}
	var all, passing int
	for _, s := range svcs {
		all += s.Instances
		passing += s.Passing
	}
	return all, passing, nil
}

// route sends routed requests from 4 callers for d, to random services of
// the swarm, and returns the latencies of those answered and the errors.
func (r *region) route(n int, d time.Duration) ([]time.Duration, int) {
	services := max(1, n/100)
	var mu sync.Mutex
	var lats []time.Duration
	var errs int
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for range 4 {
		wg.Go(func() {
			var mine []time.Duration
			bad := 0
			for time.Now().Before(stop) {
				subject := events.Subjects{}.Route(fmt.Sprintf("swarm-%d", rand.N(services)), "say")
				t := time.Now()
				m, err := r.nc.Request(subject, []byte("hi"), 5*time.Second)
				if err != nil {
					bad++
					continue
				}
				if _, _, isErr := events.ReplyError(m); isErr {
					bad++
					continue
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			lats, errs = append(lats, mine...), errs+bad
			mu.Unlock()
		})
	}
	wg.Wait()
	return lats, errs
}

// page lists every instance by pages of limit.
func (r *region) page(limit int) (pages, listed, largest int) {
	after := ""
	for {
		q, _ := json.Marshal(events.InstancesQuery{Limit: limit, After: after})
		m, err := r.nc.Request(events.Subjects{}.DiscoveryInstances(), q, 10*time.Second)
		if err != nil {
			r.b.Fatalf("page after %q: %v", after, err)
		}
		if code, text, isErr := events.ReplyError(m); isErr {
			r.b.Fatalf("page after %q: %d %s", after, code, text)
		}
		var recs []events.InstanceRecord
		if err := json.Unmarshal(m.Data, &recs); err != nil {
			r.b.Fatal(err)
		}
		pages++
		largest = max(largest, len(m.Data))
		listed += len(recs)
		if len(recs) < limit {
			return pages, listed, largest
		}
		after = recs[len(recs)-1].Key()
	}
}

// poll checks every interval until check passes, failing b at timeout.
func poll(b *testing.B, timeout, interval time.Duration, check func() error) {
	b.Helper()
	if err := bustest.PollEvery(timeout, interval, check); err != nil {
		b.Fatal(err)
	}
}

func (r *region) swarmMetric(name string) float64 { return scrapeOne(r.b, r.swarm)[name] }

func (r *region) scrape() []map[string]float64 {
	out := make([]map[string]float64, len(r.admin))
	for i, a := range r.admin {
		out[i] = scrapeOne(r.b, a)
	}
	return out
}

// scrapeOne reads a program's /metrics into series -> value.
func scrapeOne(b *testing.B, addr string) map[string]float64 {
	m, err := tryScrape(addr)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func tryScrape(addr string) (map[string]float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, len(sorted)*p/100)]
}

// restartsOf is how many NATS restarts a run makes: none on one server,
// where a restart is an outage, not a cluster's failover.
func restartsOf(servers, restarts int) int {
	if servers < 3 {
		return 0
	}
	return restarts
}
