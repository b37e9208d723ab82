package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
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

func TestDevRegionsRefused(t *testing.T) {
	for _, args := range [][]string{{"--regions", "eu"}, {"--regions", "eu,eu"}, {"--regions", "eu,US"}, {"--regions", "eu,us", "--secure"}} {
		err := run(t.Context(), args, func(string) string { return "" }, &strings.Builder{})
		if err == nil || !strings.Contains(err.Error(), "regions") {
			t.Errorf("%v: %v, want an error naming regions", args, err)
		}
	}
}
