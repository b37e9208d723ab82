package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/internal/regiontest"
)

// The program in two regions: each takes its region from its server's
// JetStream domain, sources the other's registry named by
// HAIL_REMOTE_REGIONS, and answers a query of the other region.
func TestRunSourcesRemoteRegion(t *testing.T) {
	l := regiontest.NewLinked(t, "eu", "us")
	for _, c := range []struct{ region, remote string }{{"eu", "us"}, {"us", "eu"}} {
		r := l.Region(c.region)
		r.Run("discovery "+c.region, func(ctx context.Context) error {
			return run(ctx, nil, envFrom(map[string]string{"HAIL_NATS_URL": r.URL, "HAIL_REMOTE_REGIONS": c.remote}), io.Discard)
		})
	}
	for _, name := range []string{"eu", "us"} {
		bustest.Eventually(t, 30*time.Second, func() error {
			_, err := l.Region(name).NC.Request("hail.discovery.services", nil, time.Second)
			return err
		})
	}
	inst := fakeinst.Start(t, l.Region("us").URL, fakeinst.Options{Service: "echo"})
	bustest.Eventually(t, 30*time.Second, func() error {
		m, err := l.Region("eu").NC.Request("hail.discovery.instances", []byte(`{"region":"us"}`), 5*time.Second)
		if err != nil {
			return err
		}
		var recs []events.InstanceRecord
		if err := json.Unmarshal(m.Data, &recs); err != nil {
			return fmt.Errorf("%v: %s", err, m.Data)
		}
		if len(recs) != 1 || recs[0].ID != inst.ID || recs[0].Region != "us" || recs[0].Stale {
			return fmt.Errorf("us seen from eu: %s", m.Data)
		}
		return nil
	})
}
