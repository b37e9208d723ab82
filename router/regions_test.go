package router_test

import (
	"errors"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/bus/embedded"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/internal/regiontest"
	"github.com/hailsd/hail/router"
)

// linkedRegions runs two regions as PROTOCOL v1.5 lays them out: eu and
// us, one server each with JetStream in the region's domain, us linked
// to eu by a leafnode in hail's account that denies the region-local
// subjects; each with its buckets and a discovery node, and eu's
// hail_remote sourcing us's hail_instances across the link. (Until the
// regions of internal/regiontest are merged, this is its own small
// setup.)
func linkedRegions(t testing.TB) (eu, us *regiontest.Region) {
	t.Helper()
	port := bustest.FreePort(t)
	euServer := bustest.RunServerWith(t, func(o *server.Options) {
		o.JetStreamDomain = "eu"
		o.LeafNode.Host, o.LeafNode.Port = "127.0.0.1", port
	})
	leaf := &url.URL{Scheme: "nats-leaf", Host: fmt.Sprintf("127.0.0.1:%d", port)}
	deny := []string{"hail.discover", "hail.hb.>", "hail.health.>", "hail.node.>", "hail.announce.>", "hail.deregister.>", "hail.discovery.>"}
	usServer := bustest.RunServerWith(t, func(o *server.Options) {
		o.JetStreamDomain = "us"
		o.LeafNode.Remotes = []*server.RemoteLeafOpts{{URLs: []*url.URL{leaf}, LocalAccount: embedded.HailAccount, DenyImports: deny, DenyExports: deny}}
	})
	bustest.Eventually(t, 15*time.Second, func() error {
		if euServer.NumLeafNodes() != 1 || usServer.NumLeafNodes() != 1 {
			return errors.New("leafnode not up")
		}
		return nil
	})
	eu, us = regiontest.On(t, euServer.ClientURL()), regiontest.On(t, usServer.ClientURL())
	eu.StartNode(discovery.Config{})
	us.StartNode(discovery.Config{})
	js, err := jetstream.New(eu.NC)
	if err != nil {
		t.Fatal(err)
	}
	source := &jetstream.StreamSource{Name: "KV_" + bus.InstancesBucket, External: &jetstream.ExternalStream{APIPrefix: "$JS.us.API"},
		SubjectTransforms: []jetstream.SubjectTransformConfig{{Source: "$KV." + bus.InstancesBucket + ".>", Destination: "$KV." + bus.RemoteBucket + ".us.>"}}}
	if _, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: bus.RemoteBucket, History: 1, Sources: []*jetstream.StreamSource{source}}); err != nil {
		t.Fatal(err)
	}
	return eu, us
}

// regionLoad routes echo.say from eu's caller continuously, open loop:
// a request every interval whatever the answers do (a caller stuck in the
// killed process delays no other), and keeps the time of each instance's
// first answer.
type regionLoad struct {
	*load
	mu    sync.Mutex
	first map[string]time.Time
}

func startRegionLoad(eu *regiontest.Region, interval time.Duration) *regionLoad {
	rl := &regionLoad{first: map[string]time.Time{}}
	rl.load = &load{by: map[string]int{}, errors: map[string]int{}, stop: make(chan struct{})}
	rl.wg.Add(1)
	go func() {
		defer rl.wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-rl.stop:
				return
			case <-tick.C:
			}
			rl.wg.Add(1)
			go func() {
				defer rl.wg.Done()
				rl.request(eu)
			}()
		}
	}()
	return rl
}

func (rl *regionLoad) request(eu *regiontest.Region) {
	m, err := eu.NC.Request(subjects.Route("echo", "say"), nil, 10*time.Second)
	now := time.Now()
	rl.load.mu.Lock()
	rl.total++
	if err != nil {
		rl.errors[err.Error()]++
	} else if code, text, isErr := events.ReplyError(m); isErr {
		rl.errors[fmt.Sprintf("%d %s", code, text)]++
	} else {
		rl.by[string(m.Data)]++
	}
	rl.load.mu.Unlock()
	if err == nil {
		rl.mu.Lock()
		if _, ok := rl.first[string(m.Data)]; !ok {
			rl.first[string(m.Data)] = now
		}
		rl.mu.Unlock()
	}
}

// firstAnswer waits until id has answered and returns when it first did.
func (rl *regionLoad) firstAnswer(t testing.TB, id string) time.Time {
	t.Helper()
	var at time.Time
	bustest.Eventually(t, 20*time.Second, func() error {
		rl.mu.Lock()
		defer rl.mu.Unlock()
		var ok bool
		if at, ok = rl.first[id]; !ok {
			return fmt.Errorf("%s has not answered", id)
		}
		return nil
	})
	return at
}

// Two regions joined by a leafnode: eu's router sends echo to eu's
// instance while it lives, to us's across the link when it is killed,
// and home again when an instance registers in eu; under continuous
// routing with one retry, no request fails.
func TestFailoverAcrossLeafnode(t *testing.T) {
	eu, us := linkedRegions(t)
	r := eu.StartRouter(router.Config{Table: router.TableConfig{RemoteRegions: []string{"us"}}})
	if _, err := eu.KV.Config.Put(t.Context(), events.RouteConfigKey("echo"), []byte(`{"retries":1,"retry_on_timeout":true,"timeout_ms":4000}`)); err != nil {
		t.Fatal(err)
	}
	home := fakeinst.Start(t, eu.URL, fakeinst.Options{Service: "echo", AnnounceConn: true})
	far := fakeinst.Start(t, us.URL, fakeinst.Options{Service: "echo"})
	bustest.Eventually(t, 20*time.Second, func() error {
		v := r.Table().View("echo")
		if v == nil || fmt.Sprint(v.Abroad) != "[us]" {
			return fmt.Errorf("view %+v: us not routable yet", v)
		}
		return nil
	})
	// The denies hold: us's instance is not in eu's registry.
	if _, err := eu.Record(events.InstanceKey("echo", far.ID)); err == nil {
		t.Fatal("us's instance registered in eu")
	}

	rl := startRegionLoad(eu, time.Millisecond)
	rl.firstAnswer(t, home.ID)
	killed := time.Now()
	home.Kill()
	away := rl.firstAnswer(t, far.ID)
	registered := time.Now()
	back := fakeinst.Start(t, eu.URL, fakeinst.Options{Service: "echo"})
	home2 := rl.firstAnswer(t, back.ID)
	bustest.Eventually(t, 20*time.Second, func() error {
		rl.load.mu.Lock()
		defer rl.load.mu.Unlock()
		if rl.by[back.ID] < 200 {
			return fmt.Errorf("home again answered %d", rl.by[back.ID])
		}
		return nil
	})
	rl.finish()
	if len(rl.errors) > 0 {
		t.Errorf("%d requests, failures %s", rl.total, rl.errorList())
	}
	m, err := eu.NC.Request(subjects.Route("echo", "say"), nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != back.ID || m.Header.Get(events.HeaderRouter) != r.ID() {
		t.Errorf("after the return: answered by %s via %q, want %s via %s", m.Data, m.Header.Get(events.HeaderRouter), back.ID, r.ID())
	}
	t.Logf("%d requests: eu %d, us %d, eu again %d; failover %v, back home %v",
		rl.total, rl.by[home.ID], rl.by[far.ID], rl.by[back.ID], away.Sub(killed), home2.Sub(registered))
}
