package router_test

import (
	"errors"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/router"
)

func inZone(az string) fakeinst.Options {
	return fakeinst.Options{Edit: func(a *events.Announce) { a.AZ = az }}
}

// A router in zone a keeps requests in a while a carries its share; a
// route with "zone_aware": false spreads them over every zone; and when
// zone a's instances die under continuous routing, requests go to the
// other zones with none failed.
func TestZoneAwareThroughRouter(t *testing.T) {
	e := newEnvWith(t, router.TableConfig{AZ: "a"})
	zone := map[string]string{}
	var home []*fakeinst.Instance
	for _, az := range []string{"a", "a", "b", "b", "c", "c"} {
		i := e.instance(inZone(az))
		zone[i.ID] = az
		if az == "a" {
			home = append(home, i)
		}
	}
	e.routable("echo", 2) // zone a's two: the others get nothing
	for range 200 {
		m := e.Request(subjects.Route("echo", "say"), nil)
		if zone[string(m.Data)] != "a" {
			t.Fatalf("reply from %s in zone %q, want zone a", m.Data, zone[string(m.Data)])
		}
		if m.Header.Get(events.HeaderRouter) != e.router.ID() {
			t.Fatalf("Hail-Router %q, want %s", m.Header.Get(events.HeaderRouter), e.router.ID())
		}
	}

	e.putRoute("echo", `{"zone_aware":false}`)
	e.routable("echo", 6)
	e.putRoute("echo", `{"retries":2,"retry_on_timeout":true,"timeout_ms":3000}`)
	e.routable("echo", 2)

	l := e.load(8, subjects.Route("echo", "say"), nil, 5*time.Second)
	bustest.Eventually(t, 5*time.Second, func() error {
		if l.count() < 200 {
			return errors.New("load not running yet")
		}
		return nil
	})
	for _, i := range home {
		i.Kill()
	}
	atKill := l.count()
	bustest.Eventually(t, 10*time.Second, func() error {
		if l.count() < atKill+1000 {
			return errors.New("load still running")
		}
		return nil
	})
	l.finish()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errors) > 0 {
		t.Errorf("zone a lost: %d requests, failures %s", l.total, l.errorList())
	}
	away := 0
	for id, n := range l.by {
		if zone[id] != "a" {
			away += n
		}
	}
	if away < 900 {
		t.Errorf("%d requests answered outside zone a after its instances died, want most of the 1000 after", away)
	}
	t.Logf("%d requests, %d answered in zones b and c", l.total, away)
}
