package embedded_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
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
// of what it keeps at home, in either direction.
func TestRegionLinkDenies(t *testing.T) {
	var f faults
	rs := startRegions(t, &f, "eu", "us")
	for _, dir := range [][2]string{{"eu", "us"}, {"us", "eu"}} {
		from, to := bustest.Connect(t, rs.URL(dir[0])), bustest.Connect(t, rs.URL(dir[1]))
		t.Run(dir[0]+"→"+dir[1], func(t *testing.T) {
			crossed := make(chan string, 16)
			for _, subj := range append(embedded.LeafDenies("hail"), "hail.inst.x") {
				subj = strings.Replace(subj, ">", "x", 1)
				if _, err := to.Subscribe(subj, func(m *nats.Msg) { crossed <- m.Subject }); err != nil {
					t.Fatal(err)
				}
			}
			if err := to.Flush(); err != nil {
				t.Fatal(err)
			}
			// The one subject that crosses tells when the interest is
			// known on the other side; until then, send again.
			bustest.Eventually(t, 20*time.Second, func() error {
				for _, subj := range embedded.LeafDenies("hail") {
					if err := from.Publish(strings.Replace(subj, ">", "x", 1), nil); err != nil {
						return err
					}
				}
				if err := from.Publish("hail.inst.x", nil); err != nil {
					return err
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
			select {
			case got := <-crossed:
				if got != "hail.inst.x" {
					t.Fatalf("%s crossed the link", got)
				}
			default:
			}
		})
	}
	for _, r := range rs.Names {
		if err := f.has(r, embedded.ErrLinkWithoutDenies); err == nil {
			t.Errorf("region %s: a link with the denies was reported as without", r)
		}
	}
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
// the region it joins: what it carries, and a probe answered over it.
func TestLinkWithoutDeniesDetected(t *testing.T) {
	var f faults
	port := leafPort(t)
	home, err := embedded.StartServer(embedded.ServerOptions{Name: "eu", Port: -1, StoreDir: t.TempDir(), Region: "eu",
		Leaf: embedded.LeafOptions{Port: port, OnFault: func(err error) { f.add("eu", err) }}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { home.Shutdown(); home.WaitForShutdown() })
	// A server of region us with a link to eu written by hand: it
	// carries everything, and an instance of us hears hail.discover.
	u, _ := url.Parse(fmt.Sprintf("nats-leaf://127.0.0.1:%d", port))
	us, err := embedded.StartServer(embedded.ServerOptions{Name: "us", Port: -1, StoreDir: t.TempDir(), Region: "us",
		Configure: func(o *server.Options) {
			o.LeafNode.Remotes = append(o.LeafNode.Remotes, &server.RemoteLeafOpts{URLs: []*url.URL{u}, LocalAccount: embedded.HailAccount})
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { us.Shutdown(); us.WaitForShutdown() })
	inst := bustest.Connect(t, us.ClientURL())
	if _, err := inst.SubscribeSync("hail.discover"); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 30*time.Second, func() error { return f.has("eu", embedded.ErrLinkWithoutDenies) })
}

func leafPort(t *testing.T) int {
	t.Helper()
	ports, err := embedded.FreeLoopbackPorts(1)
	if err != nil {
		t.Fatal(err)
	}
	return ports[0]
}
