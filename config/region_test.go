package config_test

import (
	"strings"
	"testing"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/bus/embedded"
	"github.com/hailsd/hail/config"
)

// A program's region is its key, else its server's JetStream domain, else
// local (PROTOCOL v1.5).
func TestRegionOf(t *testing.T) {
	s, err := embedded.StartServer(embedded.ServerOptions{Name: "eu", Port: -1, StoreDir: t.TempDir(), Region: "eu"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	inDomain := bustest.Connect(t, s.ClientURL())
	plain := bustest.Connect(t, bustest.RunServer(t).ClientURL())
	for _, tc := range []struct {
		name, key string
		onDomain  bool
		want      string
	}{
		{"key", "us", true, "us"},
		{"domain", "", true, "eu"},
		{"no domain", "", false, "local"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config.DefaultCommon()
			c.Region = tc.key
			nc := plain
			if tc.onDomain {
				nc = inDomain
			}
			got, err := c.RegionOf(nc)
			if err != nil || got != tc.want {
				t.Fatalf("RegionOf = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestRegionKeyValidated(t *testing.T) {
	for _, bad := range []string{"eu.west", "EU", "*"} {
		c := config.DefaultCommon()
		c.Region = bad
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "region") {
			t.Errorf("region %q: Validate = %v, want an error naming region", bad, err)
		}
	}
}
