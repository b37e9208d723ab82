package router_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/internal/regiontest"
	"github.com/hailsd/hail/router"
)

// linkedRegions runs two regions as PROTOCOL v1.5 lays them out
// (regiontest.NewLinked: eu and us, one server each with JetStream in the
// region's domain, us linked to eu by a leafnode with hail's denies), each
// with a discovery node; eu's sources us's hail_instances into hail_remote.
func linkedRegions(t testing.TB) (eu, us *regiontest.Region) {
	t.Helper()
	l := regiontest.NewLinked(t, "eu", "us")
	eu, us = l.Region("eu"), l.Region("us")
	us.StartNode(discovery.Config{})
	eu.StartNode(discovery.Config{RemoteRegions: []string{"us"}})
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
