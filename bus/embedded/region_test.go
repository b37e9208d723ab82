package embedded_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/bus/embedded"
)

// faults collects what the link checkers find, by region.
type faults struct {
	mu  sync.Mutex
	got map[string][]error
}

func (f *faults) add(region string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.got == nil {
		f.got = map[string][]error{}
	}
	f.got[region] = append(f.got[region], err)
}

func (f *faults) has(region string, target error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, err := range f.got[region] {
		if errors.Is(err, target) {
			return nil
		}
	}
	return errors.New("not yet")
}

func startRegions(t *testing.T, f *faults, names ...string) *embedded.Regions {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rs, err := embedded.StartRegions(ctx, embedded.RegionsOptions{Names: names, Dir: t.TempDir(), OnFault: f.add})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Shutdown)
	return rs
}

// Two regions' link carries what v1.5 lets cross (hail.inst.>) and none
// of what it keeps at home, in either direction, to subscribers of the
// denied subjects and of wildcards over them (as discovery's hail.node.>
// and a debugging hail.>); and the link checker, which sees those
// wildcards in the link's subscriptions, finds no fault in it.
func TestRegionLinkDenies(t *testing.T) {
	var f faults
	rs := startRegions(t, &f, "eu", "us")
	denies := embedded.LeafDenies("hail")
	// What each side publishes: a subject of each deny, and the one
	// that crosses.
	sent := map[string]bool{"hail.inst.x": true}
	for _, d := range denies {
		sent[strings.Replace(d, ">", "x", 1)] = true
	}
	for _, dir := range [][2]string{{"eu", "us"}, {"us", "eu"}} {
		from, to := bustest.Connect(t, rs.URL(dir[0])), bustest.Connect(t, rs.URL(dir[1]))
		t.Run(dir[0]+"→"+dir[1], func(t *testing.T) {
			crossed := make(chan string, 64)
			subjects := slices.Concat(denies, slices.Collect(maps.Keys(sent)),
				// Last: the link's subscriptions are sent in order, so
				// once the other side lists hail.> it has seen the rest.
				[]string{"hail.>"})
			for _, subj := range subjects {
				// The region's own link checker probes under
				// hail.discovery.> at home: only what the other side
				// sent counts.
				if _, err := to.Subscribe(subj, func(m *nats.Msg) {
					if sent[m.Subject] {
						crossed <- m.Subject
					}
				}); err != nil {
					t.Fatal(err)
				}
			}
			if err := to.Flush(); err != nil {
				t.Fatal(err)
			}
			// The one subject that crosses tells when the interest is
			// known on the other side; until then, send again.
			bustest.Eventually(t, 20*time.Second, func() error {
				for subj := range sent {
					if err := from.Publish(subj, nil); err != nil {
						return err
					}
				}
				select {
				case got := <-crossed:
					if got != "hail.inst.x" {
						t.Fatalf("%s crossed the link", got)
					}
					return nil
				case <-time.After(100 * time.Millisecond):
					return errors.New("hail.inst.x has not crossed")
				}
			})
			// Anything denied sent before the last hail.inst.x would have
			// arrived before it.
			if err := from.Flush(); err != nil {
				t.Fatal(err)
			}
			for len(crossed) > 0 {
				if got := <-crossed; got != "hail.inst.x" {
					t.Fatalf("%s crossed the link", got)
				}
			}
			// The checker's verdict once the wildcards are among the
			// link's subscriptions on the sending side.
			s := rs.Servers[dir[0]]
			bustest.Eventually(t, 20*time.Second, func() error { return linkLists(s, "hail.>") })
			if errs := embedded.CheckLinks(s, from, dir[0], "hail"); len(errs) > 0 {
				t.Fatalf("region %s: a link with the denies found at fault: %v", dir[0], errs)
			}
		})
	}
	for _, r := range rs.Names {
		if err := f.has(r, embedded.ErrLinkWithoutDenies); err == nil {
			t.Errorf("region %s: a link with the denies was reported as without", r)
		}
	}
}

// linkLists says whether a leafnode link of s lists a subscription to
// subject.
func linkLists(s *server.Server, subject string) error {
	lz, err := s.Leafz(&server.LeafzOptions{Subscriptions: true})
	if err != nil {
		return err
	}
	for _, l := range lz.Leafs {
		if slices.Contains(l.Subs, subject) {
			return nil
		}
	}
	return fmt.Errorf("no link of %s lists %s", s.Name(), subject)
}

// Each region's JetStream is its own, reachable from the other by domain.
func TestRegionDomains(t *testing.T) {
	var f faults
	rs := startRegions(t, &f, "eu", "us")
	nc := bustest.Connect(t, rs.URL("eu"))
	for _, domain := range []string{"eu", "us"} {
		m, err := nc.Request("$JS."+domain+".API.INFO", nil, 5*time.Second)
		if err != nil {
			t.Fatalf("JetStream of %s: %v", domain, err)
		}
		if !strings.Contains(string(m.Data), `"domain":"`+domain+`"`) {
			t.Fatalf("$JS.%s.API.INFO answered %s", domain, m.Data)
		}
	}
}

func TestRegionNameRefused(t *testing.T) {
	for _, name := range []string{"eu.west", "EU", "*", "a b"} {
		t.Run(name, func(t *testing.T) {
			_, err := embedded.StartServer(embedded.ServerOptions{Name: "x", Port: -1, StoreDir: t.TempDir(), Region: name})
			if err == nil || !strings.Contains(err.Error(), "region") {
				t.Fatalf("region %q: err = %v, want a region error", name, err)
			}
		})
	}
}

// Two regions of one name joined by a link: each one's checker says so.
func TestSameRegionsRefuseToJoin(t *testing.T) {
	var f faults
	port := leafPort(t)
	a, err := embedded.StartServer(embedded.ServerOptions{Name: "eu-a", Port: -1, StoreDir: t.TempDir(), Region: "eu",
		Leaf: embedded.LeafOptions{Port: port, OnFault: func(err error) { f.add("eu-a", err) }}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Shutdown(); a.WaitForShutdown() })
	b, err := embedded.StartServer(embedded.ServerOptions{Name: "eu-b", Port: -1, StoreDir: t.TempDir(), Region: "eu",
		Leaf: embedded.LeafOptions{Remotes: []string{fmt.Sprintf("nats-leaf://127.0.0.1:%d", port)}, OnFault: func(err error) { f.add("eu-b", err) }}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Shutdown(); b.WaitForShutdown() })
	for _, side := range []string{"eu-a", "eu-b"} {
		bustest.Eventually(t, 30*time.Second, func() error { return f.has(side, embedded.ErrSameRegion) })
	}
}

// A link another server made by hand, without the denies, is found by
// the region it joins from what it carries: an instance's hail.discover,
// or only a discovery node's hail.node.> (a wildcard a deny covers, which
// the link's denies would have kept on the other side).
func TestLinkWithoutDeniesDetected(t *testing.T) {
	for _, subject := range []string{"hail.discover", "hail.node.>"} {
		t.Run(subject, func(t *testing.T) {
			var f faults
			port := leafPort(t)
			home, err := embedded.StartServer(embedded.ServerOptions{Name: "eu", Port: -1, StoreDir: t.TempDir(), Region: "eu",
				Leaf: embedded.LeafOptions{Port: port, OnFault: func(err error) { f.add("eu", err) }}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { home.Shutdown(); home.WaitForShutdown() })
			// A server of region us with a link to eu written by hand:
			// it carries everything. It runs no link checker (no
			// LeafOptions), so its probe subscriptions do not give it
			// away.
			u, _ := url.Parse(fmt.Sprintf("nats-leaf://127.0.0.1:%d", port))
			us, err := embedded.StartServer(embedded.ServerOptions{Name: "us", Port: -1, StoreDir: t.TempDir(), Region: "us",
				Configure: func(o *server.Options) {
					o.LeafNode.Remotes = append(o.LeafNode.Remotes, &server.RemoteLeafOpts{URLs: []*url.URL{u}, LocalAccount: embedded.HailAccount})
				}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { us.Shutdown(); us.WaitForShutdown() })
			nc := bustest.Connect(t, us.ClientURL())
			if _, err := nc.SubscribeSync(subject); err != nil {
				t.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			bustest.Eventually(t, 30*time.Second, func() error { return linkLists(home, subject) })
			checker := bustest.Connect(t, home.ClientURL())
			if errs := embedded.CheckLinks(home, checker, "eu", "hail"); !slices.ContainsFunc(errs, func(err error) bool {
				return errors.Is(err, embedded.ErrLinkWithoutDenies)
			}) {
				t.Fatalf("CheckLinks = %v, want %v", errs, embedded.ErrLinkWithoutDenies)
			}
			// The server's own checker says so too.
			bustest.Eventually(t, 30*time.Second, func() error { return f.has("eu", embedded.ErrLinkWithoutDenies) })
		})
	}
}

func leafPort(t *testing.T) int {
	t.Helper()
	ports, err := embedded.FreeLoopbackPorts(1)
	if err != nil {
		t.Fatal(err)
	}
	return ports[0]
}
