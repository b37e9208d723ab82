package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/proctest"
)

// remoteStale is the regions' remote_stale here: short, so that a cut
// shows within the test.
const remoteStale = 3 * time.Second

// procRegion is one region of the project's programs as processes
// (PROTOCOL v1.5): services/nats with its region, discovery and a
// router with the other regions as remote_regions, and echo processes.
type procRegion struct {
	t     testing.TB
	name  string
	url   string
	nc    *nats.Conn
	procs []*proctest.Process // in start order, the server first
	// natsArgs restart the server as it was (same port, same store).
	natsArgs []string
}

// startLinkedProcs starts eu, which accepts links, and us, linked to it
// by a leafnode, each with its discovery and router; eu's router is in
// zone eu-a.
func startLinkedProcs(t *testing.T) (eu, us *procRegion) {
	t.Helper()
	leaf := "127.0.0.1:" + strconv.Itoa(bustest.FreePort(t))
	eu = startProcServer(t, "eu", "--leafnodes-listen", leaf)
	us = startProcServer(t, "us", "--leafnodes-remotes", "nats-leaf://"+leaf)
	// Linked: eu reaches us's JetStream through its domain.
	bustest.Eventually(t, time.Minute, func() error {
		m, err := eu.nc.Request("$JS.us.API.INFO", nil, time.Second)
		if err != nil {
			return fmt.Errorf("us's JetStream from eu: %w", err)
		}
		if !strings.Contains(string(m.Data), `"domain":"us"`) {
			return fmt.Errorf("$JS.us.API.INFO from eu: %s", m.Data)
		}
		return nil
	})
	eu.startHail("us", "eu-a")
	us.startHail("eu", "")
	return eu, us
}

func startProcServer(t *testing.T, region string, link ...string) *procRegion {
	t.Helper()
	port := bustest.FreePort(t)
	r := &procRegion{t: t, name: region, url: "nats://127.0.0.1:" + strconv.Itoa(port)}
	r.natsArgs = append([]string{"--name", "nats-" + region, "--region", region, "--listen", "127.0.0.1:" + strconv.Itoa(port), "--store-dir", t.TempDir()}, link...)
	r.procs = append(r.procs, start(t, "nats-"+region, "nats", map[string]string{"HAIL_LOG_LEVEL": "warn"}, r.natsArgs...))
	bustest.Eventually(t, time.Minute, func() error {
		nc, err := nats.Connect(r.url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
		if err != nil {
			return err
		}
		r.nc = nc
		return nil
	})
	t.Cleanup(r.nc.Close)
	return r
}

func (r *procRegion) env() map[string]string {
	return map[string]string{"HAIL_NATS_URL": r.url, "HAIL_LOG_LEVEL": "warn"}
}

// startHail starts the region's discovery node and router, both with
// remote as remote_regions, the router in zone az.
func (r *procRegion) startHail(remote, az string) {
	r.t.Helper()
	env := r.env()
	env["HAIL_REMOTE_REGIONS"], env["HAIL_REMOTE_STALE"] = remote, remoteStale.String()
	daddr := "127.0.0.1:" + strconv.Itoa(bustest.FreePort(r.t))
	d := start(r.t, "discovery-"+r.name, "discovery", env, "--http-addr", daddr)
	d.WaitReady(r.t, daddr)
	env["HAIL_AZ"] = az
	raddr := "127.0.0.1:" + strconv.Itoa(bustest.FreePort(r.t))
	rt := start(r.t, "router-"+r.name, "router", env, "--http-addr", raddr)
	rt.WaitReady(r.t, raddr)
	r.procs = append(r.procs, d, rt)
}

// echo starts an echo process in zone az and returns it with its
// instance id once the region's discovery lists it passing.
func (r *procRegion) echo(az string) (*proctest.Process, string) {
	r.t.Helper()
	before, err := r.query(`{"service":"echo"}`)
	if err != nil {
		r.t.Fatal(err)
	}
	env := r.env()
	env["HAIL_AZ"] = az
	p := start(r.t, "echo-"+r.name+"-"+az, "echo", env)
	r.procs = append(r.procs, p)
	var id string
	bustest.Eventually(r.t, time.Minute, func() error {
		if err := p.Exited(); err != nil {
			return err
		}
		recs, err := r.query(`{"service":"echo"}`)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if rec.AZ == az && rec.Status == events.Passing && !slices.ContainsFunc(before, func(b events.InstanceRecord) bool { return b.ID == rec.ID }) {
				id = rec.ID
				return nil
			}
		}
		return fmt.Errorf("no new passing echo in %s", az)
	})
	return p, id
}

// query asks the region's discovery for instances.
func (r *procRegion) query(q string) ([]events.InstanceRecord, error) {
	m, err := r.nc.Request(events.Subjects{}.DiscoveryInstances(), []byte(q), 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%s: instances %s: %w", r.name, q, err)
	}
	var recs []events.InstanceRecord
	if err := json.Unmarshal(m.Data, &recs); err != nil {
		return nil, fmt.Errorf("%s: instances %s: %w: %s", r.name, q, err, m.Data)
	}
	return recs, nil
}

// keys are the keys of the region's own hail_instances.
func (r *procRegion) keys() []string {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, err := jetstream.New(r.nc)
	if err != nil {
		r.t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, bus.InstancesBucket)
	if err != nil {
		r.t.Fatal(err)
	}
	l, err := kv.ListKeys(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	var keys []string
	for k := range l.Keys() {
		keys = append(keys, k)
	}
	return keys
}

// registered delivers the time each new passing record of echo is put in
// the region's hail_instances, by id, as the watch sees it.
func (r *procRegion) registered() <-chan registration {
	r.t.Helper()
	js, err := jetstream.New(r.nc)
	if err != nil {
		r.t.Fatal(err)
	}
	kv, err := js.KeyValue(r.t.Context(), bus.InstancesBucket)
	if err != nil {
		r.t.Fatal(err)
	}
	w, err := kv.Watch(r.t.Context(), "echo.*", jetstream.UpdatesOnly())
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { _ = w.Stop() })
	out := make(chan registration, 64)
	go func() {
		for e := range w.Updates() {
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			if rec, err := events.DecodeInstanceRecord(e.Value()); err == nil && rec.Status == events.Passing {
				select {
				case out <- registration{rec.ID, time.Now()}:
				default:
				}
			}
		}
	}()
	return out
}

type registration struct {
	id string
	at time.Time
}

// regionLoad sends routed requests from its own goroutines until finish,
// each tried again once if it fails (a client's one retry), and keeps who
// answered, when each instance first did, and what failed twice.
type regionLoad struct {
	stop     atomic.Bool
	sent     atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	by       map[string]int
	first    map[string]time.Time
	retried  []string
	failures []string
}

func (r *procRegion) load(workers int) *regionLoad {
	r.t.Helper()
	caller, err := nats.Connect(r.url)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(caller.Close)
	l := &regionLoad{by: map[string]int{}, first: map[string]time.Time{}}
	subject := events.Subjects{}.Route("echo", "say")
	attempt := func() (string, error) {
		m, err := caller.Request(subject, []byte("hi"), 10*time.Second)
		if err != nil {
			return "", err
		}
		if code, msg, isErr := events.ReplyError(m); isErr {
			return "", fmt.Errorf("%d %s", code, msg)
		}
		return m.Header.Get(events.HeaderInstance), nil
	}
	for range workers {
		l.wg.Go(func() {
			for !l.stop.Load() {
				id, err := attempt()
				if err != nil {
					l.mu.Lock()
					l.retried = append(l.retried, err.Error())
					l.mu.Unlock()
					var again error
					if id, again = attempt(); again != nil {
						l.mu.Lock()
						l.failures = append(l.failures, fmt.Sprintf("%v, then %v", err, again))
						l.mu.Unlock()
					}
				}
				at := time.Now()
				l.sent.Add(1)
				if id != "" {
					l.mu.Lock()
					l.by[id]++
					if _, ok := l.first[id]; !ok {
						l.first[id] = at
					}
					l.mu.Unlock()
				}
			}
		})
	}
	return l
}

// more waits until n more requests were answered or failed.
func (l *regionLoad) more(t testing.TB, n int64) {
	t.Helper()
	after := l.sent.Load()
	bustest.Eventually(t, time.Minute, func() error {
		if l.sent.Load() < after+n {
			return errors.New("load still running")
		}
		return nil
	})
}

// counts is who answered so far.
func (l *regionLoad) counts() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.by)
}

// firstAnswer waits until id answered and returns when it first did.
func (l *regionLoad) firstAnswer(t testing.TB, id, what string) time.Time {
	t.Helper()
	var at time.Time
	bustest.Eventually(t, time.Minute, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		var ok bool
		if at, ok = l.first[id]; !ok {
			return fmt.Errorf("%s: %s has not answered", what, id)
		}
		return nil
	})
	return at
}

// finish stops the load and fails t for every request that failed twice.
func (l *regionLoad) finish(t testing.TB, what string) {
	t.Helper()
	l.stop.Store(true)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	why := map[string]int{}
	for _, r := range l.retried {
		why[r]++
	}
	t.Logf("%s: %d requests, %d retried once: %v", what, l.sent.Load(), len(l.retried), why)
	for _, f := range l.failures {
		t.Errorf("%s: a request failed after its one retry: %s", what, f)
	}
}

// diff is after less before, by id.
func diff(before, after map[string]int) map[string]int {
	d := map[string]int{}
	for id, n := range after {
		if n -= before[id]; n > 0 {
			d[id] = n
		}
	}
	return d
}

// Two regions of the project's own programs as processes, joined by a
// leafnode (PROTOCOL v1.5), under continuous routing from eu:
//   - each region's state is its own, and eu's hail_remote holds us's
//     instances, which eu's discovery answers for {"region":"us"} and "*"
//     (and the nats CLI lists);
//   - eu's router, in zone eu-a, keeps its requests in eu-a, and spills
//     to eu-b and eu-c when eu-a's echo is killed;
//   - when eu's last echo is killed, eu's requests go to us, and home
//     again once an echo registers in eu, with no request failing twice;
//   - when us's server is killed, eu serves itself without a failed
//     request and marks us stale; us restarted, eu sees it fresh again.
func TestRegionsAsProcesses(t *testing.T) {
	whole := t
	eu, us := startLinkedProcs(t)
	echoA, idA := eu.echo("eu-a")
	echoB, idB := eu.echo("eu-b")
	echoC, idC := eu.echo("eu-c")
	_, idUS := us.echo("us-a")
	zone := map[string]string{idA: "eu-a", idB: "eu-b", idC: "eu-c", idUS: "us"}

	t.Run("state apart, hail_remote filled, region queries", func(t *testing.T) {
		for _, c := range []struct {
			r    *procRegion
			want []string
		}{{eu, []string{idA, idB, idC}}, {us, []string{idUS}}} {
			var got []string
			for _, k := range c.r.keys() {
				got = append(got, strings.TrimPrefix(k, "echo."))
			}
			if slices.Sort(got); !slices.Equal(got, slices.Sorted(slices.Values(c.want))) {
				t.Errorf("%s's hail_instances holds %v, want its own %v", c.r.name, got, c.want)
			}
			recs, err := c.r.query(`{"service":"echo"}`)
			if err != nil {
				t.Fatal(err)
			}
			for _, rec := range recs {
				if rec.Region != c.r.name || !slices.Contains(c.want, rec.ID) {
					t.Errorf("%s's own query answers %s of region %q", c.r.name, rec.ID, rec.Region)
				}
			}
		}
		for _, c := range []struct {
			r        *procRegion
			q        string
			byRegion map[string]int
		}{
			{eu, `{"service":"echo","region":"us"}`, map[string]int{"us": 1}},
			{eu, `{"service":"echo","region":"*"}`, map[string]int{"eu": 3, "us": 1}},
			{us, `{"service":"echo","region":"eu"}`, map[string]int{"eu": 3}},
		} {
			bustest.Eventually(t, 30*time.Second, func() error {
				recs, err := c.r.query(c.q)
				if err != nil {
					return err
				}
				got := map[string]int{}
				for _, rec := range recs {
					if rec.Stale {
						return fmt.Errorf("%s %s: %s is stale", c.r.name, c.q, rec.ID)
					}
					got[rec.Region]++
				}
				if !maps.Equal(got, c.byRegion) {
					return fmt.Errorf("%s %s: instances by region %v, want %v", c.r.name, c.q, got, c.byRegion)
				}
				return nil
			})
		}
		cmd := exec.Command(natsCLIPath(t), "-s", eu.url, "kv", "ls", bus.RemoteBucket)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "us.echo."+idUS) || strings.Contains(string(out), idA) {
			t.Errorf("nats kv ls %s on eu: %v\n%s\nwant us.echo.%s and none of eu's", bus.RemoteBucket, err, out, idUS)
		}
	})

	load := eu.load(4)
	t.Cleanup(func() { load.stop.Store(true); load.wg.Wait() })

	t.Run("zone locality and spill", func(t *testing.T) {
		load.firstAnswer(t, idA, "eu-a's echo")
		before := load.counts()
		load.more(t, 400)
		got := diff(before, load.counts())
		total, inZone := 0, got[idA]
		for _, n := range got {
			total += n
		}
		t.Logf("zone eu-a's router, three zones of one echo each: %d of %d requests in eu-a (%v)", inZone, total, got)
		if float64(inZone) < 0.95*float64(total) {
			t.Errorf("%d of %d requests answered in zone eu-a, want at least 95%%: %v", inZone, total, got)
		}
		killed := time.Now()
		if err := syscall.Kill(echoA.PID(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		b, c := load.firstAnswer(t, idB, "eu-b after eu-a's kill"), load.firstAnswer(t, idC, "eu-c after eu-a's kill")
		t.Logf("eu-a's echo killed: eu-b answers %v and eu-c %v after", b.Sub(killed).Round(time.Millisecond), c.Sub(killed).Round(time.Millisecond))
		before = load.counts()
		load.more(t, 200)
		if got := diff(before, load.counts()); got[idUS] > 0 || got[idA] > 0 {
			t.Errorf("after eu-a's kill, answered by %v; want eu-b and eu-c alone", got)
		}
	})

	t.Run("failover abroad and home", func(t *testing.T) {
		regs := eu.registered()
		// eu-b first, and eu-c once eu-b is out: killed at once, a
		// request caught by one's kill is tried again on the other,
		// caught by its kill too, and the load's callers try once more
		// only.
		if err := syscall.Kill(echoB.PID(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		bustest.Eventually(t, 30*time.Second, func() error {
			recs, err := eu.query(`{"service":"echo"}`)
			if err != nil {
				return err
			}
			for _, rec := range recs {
				if rec.ID == idB && rec.Status == events.Passing {
					return fmt.Errorf("eu-b's echo still passing after its kill")
				}
			}
			return nil
		})
		killed := time.Now()
		if err := syscall.Kill(echoC.PID(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		abroad := load.firstAnswer(t, idUS, "us's echo after eu's last was killed")
		t.Logf("failover: eu's last echo killed, the first request answered in us %v after", abroad.Sub(killed).Round(time.Millisecond))
		if abroad.Sub(killed) > 10*time.Second {
			t.Errorf("failover took %v", abroad.Sub(killed))
		}
		load.more(t, 100)
		_, idHome := eu.echo("eu-a")
		zone[idHome] = "eu-a"
		var reg registration
		for reg.id != idHome {
			select {
			case reg = <-regs:
			case <-time.After(time.Minute):
				t.Fatalf("no passing record of %s in eu's hail_instances", idHome)
			}
		}
		home := load.firstAnswer(t, idHome, "the new echo in eu")
		t.Logf("home: an echo registered in eu, the first request answered by it %v after", home.Sub(reg.at).Round(time.Millisecond))
		if home.Sub(reg.at) > 10*time.Second {
			t.Errorf("home took %v", home.Sub(reg.at))
		}
		before := load.counts()
		load.more(t, 200)
		if got := diff(before, load.counts()); got[idUS] > 4 {
			t.Errorf("home again, yet us answered %d of the next 200 (more than the 4 in flight): %v", got[idUS], got)
		}
	})

	t.Run("cut off region serves itself", func(t *testing.T) {
		euBefore := eu.keys()
		before := load.counts()
		cut := time.Now()
		if err := syscall.Kill(us.procs[0].PID(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		bustest.Eventually(t, 30*time.Second, func() error {
			recs, err := eu.query(`{"service":"echo","region":"us"}`)
			if err != nil {
				return err
			}
			if len(recs) != 1 || !recs[0].Stale {
				return fmt.Errorf("us's echo in eu's answer: %+v, want it stale", recs)
			}
			return nil
		})
		t.Logf("us's server killed: eu marks us stale %v after (remote_stale %v)", time.Since(cut).Round(time.Millisecond), remoteStale)
		load.more(t, 200)
		got := diff(before, load.counts())
		if len(got) != 1 {
			t.Errorf("while us is cut off, eu's requests answered by %v; want eu's echo alone", got)
		}
		if after := eu.keys(); !slices.Equal(slices.Sorted(slices.Values(after)), slices.Sorted(slices.Values(euBefore))) {
			t.Errorf("eu's hail_instances %v while us is cut off, before %v", after, euBefore)
		}
		// us again, on its port and store: its registry is sourced again
		// and fresh in eu.
		start(whole, "nats-us-again", "nats", map[string]string{"HAIL_LOG_LEVEL": "warn"}, us.natsArgs...)
		// Stop us's programs before its server (cleanups run last first).
		whole.Cleanup(func() {
			for _, p := range slices.Backward(us.procs[1:]) {
				p.Stop(whole)
			}
		})
		bustest.Eventually(t, time.Minute, func() error {
			recs, err := eu.query(`{"service":"echo","region":"us"}`)
			if err != nil {
				return err
			}
			if len(recs) != 1 || recs[0].Stale {
				return fmt.Errorf("us's echo in eu's answer: %+v, want it fresh", recs)
			}
			return nil
		})
		t.Logf("us's server restarted: us fresh in eu %v after the kill", time.Since(cut).Round(time.Millisecond))
	})
	load.finish(t, "routed from eu")
}
