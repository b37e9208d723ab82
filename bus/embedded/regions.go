package embedded

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Regions are regions in one process, one server each with JetStream in
// the region's domain (PROTOCOL v1.5), joined by leafnode links with
// hail's denies: the first region accepts a link from each of the
// others, which makes it through a TCP proxy so that Cut can take a
// region off the rest. The dev stack's --regions and the tests of
// regions run on it.
type Regions struct {
	Names   []string
	Servers map[string]*server.Server
	// proxies carry each region's link to the first, but the first's.
	proxies map[string]*proxy
}

// RegionsOptions configure StartRegions.
type RegionsOptions struct {
	// Names of the regions, at least one; each a valid region.
	Names []string
	// Dir holds each region's JetStream store, in a folder of its name.
	Dir string
	// Port of the first region's clients, and of each next one's
	// counting up; 0 picks free ports.
	Port int
	// Prefix of the hail subjects the links deny; default hail.
	Prefix string
	// OnFault is told the faults the link checker finds.
	OnFault func(region string, err error)
}

// StartRegions starts the regions, and waits until each region's link is
// up and every JetStream answers in its domain.
func StartRegions(ctx context.Context, o RegionsOptions) (*Regions, error) {
	if len(o.Names) == 0 {
		return nil, fmt.Errorf("start regions: no region named")
	}
	ports, err := FreeLoopbackPorts(len(o.Names) + 1)
	if err != nil {
		return nil, err
	}
	if o.Port != 0 {
		for i := range o.Names {
			ports[i] = o.Port + i
		}
	}
	leafPort := ports[len(o.Names)]
	r := &Regions{Names: o.Names, Servers: map[string]*server.Server{}, proxies: map[string]*proxy{}}
	for i, name := range o.Names {
		so := ServerOptions{Name: "hail-" + name, Port: ports[i], StoreDir: filepath.Join(o.Dir, name), Region: name}
		so.Leaf.Prefix = o.Prefix
		if o.OnFault != nil {
			so.Leaf.OnFault = func(err error) { o.OnFault(name, err) }
		}
		if i == 0 {
			so.Leaf.Port = leafPort
			// The others link through their proxies: told of this
			// server's real leafnode address, they would link around
			// them, and Cut would cut nothing.
			so.Configure = func(o *server.Options) { o.LeafNode.NoAdvertise = true }
		} else {
			p, err := newProxy("127.0.0.1:" + strconv.Itoa(leafPort))
			if err != nil {
				r.Shutdown()
				return nil, fmt.Errorf("leafnode proxy of %s: %w", name, err)
			}
			r.proxies[name] = p
			so.Leaf.Remotes = []string{"nats-leaf://" + p.addr()}
		}
		s, err := StartServer(so)
		if err != nil {
			r.Shutdown()
			return nil, fmt.Errorf("start region %s: %w", name, err)
		}
		r.Servers[name] = s
	}
	if err := r.WaitLinked(ctx); err != nil {
		r.Shutdown()
		return nil, err
	}
	return r, nil
}

// URL is the client URL of a region's server.
func (r *Regions) URL(name string) string { return r.Servers[name].ClientURL() }

// Cut takes region name (not the first) off the others: its link is
// dropped and refused until Heal. Its clients stay connected to it.
func (r *Regions) Cut(name string) { r.proxyOf(name).setCut(true) }

// Heal undoes Cut; the link is made again within the server's leafnode
// reconnect interval (1 s).
func (r *Regions) Heal(name string) { r.proxyOf(name).setCut(false) }

func (r *Regions) proxyOf(name string) *proxy {
	p, ok := r.proxies[name]
	if !ok {
		panic("embedded: region " + name + " has no link of its own to cut (the first region accepts the others')")
	}
	return p
}

// WaitLinked waits until every region but the first has its link up and
// each region's JetStream answers in its domain from every other region.
func (r *Regions) WaitLinked(ctx context.Context) error {
	for {
		err := r.linked()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("regions not linked: %w (last: %v)", ctx.Err(), err)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

func (r *Regions) linked() error {
	for _, name := range r.Names[1:] {
		if n := r.Servers[name].NumLeafNodes(); n != 1 {
			return fmt.Errorf("region %s has %d leafnode links", name, n)
		}
	}
	for _, from := range r.Names {
		nc, err := nats.Connect(r.URL(from))
		if err != nil {
			return err
		}
		for _, to := range r.Names {
			if _, err := nc.Request("$JS."+to+".API.INFO", nil, time.Second); err != nil {
				nc.Close()
				return fmt.Errorf("JetStream of %s from %s: %w", to, from, err)
			}
		}
		nc.Close()
	}
	return nil
}

// Shutdown stops every region.
func (r *Regions) Shutdown() {
	for _, s := range r.Servers {
		s.Shutdown()
		s.WaitForShutdown()
	}
	for _, p := range r.proxies {
		p.close()
	}
}
