package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/echo"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/instance"
)

// --regions eu,us: two regions in one process, each with its own echo
// instances routed at home, and each knowing the other's through
// hail_remote.
func TestDevRegions(t *testing.T) {
	d := startDev(t, "--regions", "eu,us", "--echo", "2")
	if !strings.Contains(d.out.String(), "2 regions joined by leafnodes (eu, us)") {
		t.Fatalf("welcome:\n%s", d.out.String())
	}
	eu := bustest.Connect(t, d.url)
	m, err := eu.Request(events.Subjects{}.Route("echo", "say"), []byte("hi"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	home := m.Header.Get("Hail-Instance")
	bustest.Eventually(t, 30*time.Second, func() error {
		m, err := eu.Request(events.Subjects{}.DiscoveryInstances(), []byte(`{"region":"*"}`), 5*time.Second)
		if err != nil {
			return err
		}
		var recs []events.InstanceRecord
		if err := json.Unmarshal(m.Data, &recs); err != nil {
			return err
		}
		by := map[string]int{}
		for _, r := range recs {
			by[r.Region]++
			if r.ID == home && r.Region != "eu" {
				return fmt.Errorf("eu's request answered by %s of region %s", home, r.Region)
			}
		}
		if by["eu"] != 2 || by["us"] != 2 {
			return fmt.Errorf("instances by region %v, want 2 and 2", by)
		}
		return nil
	})
	d.stop(t)
}

// What the welcome tells a newcomer to do, done with the dev program's own
// parts: --echo 0, an echo in each region, then eu's stopped. eu's router
// routes echo to us while eu has none, and home again once one registers.
func TestDevRegionsFailoverAndBack(t *testing.T) {
	d := startDev(t, "--regions", "eu,us", "--echo", "0")
	usURL := strings.TrimSpace(strings.Fields(d.out.String()[strings.Index(d.out.String(), "  us "):])[2])
	if !strings.HasPrefix(usURL, "nats://") {
		t.Fatalf("us's URL %q in the welcome:\n%s", usURL, d.out.String())
	}
	startEcho := func(url, region string) *instance.Instance {
		t.Helper()
		inst, err := echo.Start(t.Context(), bustest.Connect(t, url), instance.Config{Service: "echo", Version: "1.0.0", Metrics: metrics.NewSet()})
		if err != nil {
			t.Fatalf("echo in %s: %v", region, err)
		}
		return inst
	}
	eu := bustest.Connect(t, d.url)
	// answeredBy waits until eu's router answers echo.say from want.
	answeredBy := func(want, what string) {
		t.Helper()
		bustest.Eventually(t, 30*time.Second, func() error {
			m, err := eu.Request(events.Subjects{}.Route("echo", "say"), []byte("hi"), 2*time.Second)
			if err != nil {
				return err
			}
			if got := m.Header.Get(events.HeaderInstance); string(m.Data) != "hi" || got != want {
				return fmt.Errorf("%s: answered %q by %q, want by %s", what, m.Data, got, want)
			}
			return nil
		})
	}
	home := startEcho(d.url, "eu")
	abroad := startEcho(usURL, "us")
	answeredBy(home.ID(), "eu's own echo")
	if err := home.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	answeredBy(abroad.ID(), "eu's echo stopped: us's")
	back := startEcho(d.url, "eu")
	answeredBy(back.ID(), "a new echo in eu")
	for _, inst := range []*instance.Instance{back, abroad} {
		if err := inst.Shutdown(t.Context()); err != nil {
			t.Error(err)
		}
	}
	d.stop(t)
}

func TestDevRegionsRefused(t *testing.T) {
	for _, args := range [][]string{{"--regions", "eu"}, {"--regions", "eu,eu"}, {"--regions", "eu,US"}, {"--regions", "eu,us", "--secure"}} {
		err := run(t.Context(), args, func(string) string { return "" }, &strings.Builder{})
		if err == nil || !strings.Contains(err.Error(), "regions") {
			t.Errorf("%v: %v, want an error naming regions", args, err)
		}
	}
}
