package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/internal/regiontest"
	"github.com/hailsd/hail/roles"
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

// A secured node (the discovery role's permissions) makes and reads
// hail_remote: a query of a remote region is answered, empty here (the
// region is not linked), not refused.
func TestSecuredRemoteRegions(t *testing.T) {
	s := bustest.RunSecured(t, roles.Discovery(events.Subjects{}), roles.Console(events.Subjects{}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, nil, envFrom(map[string]string{
			"HAIL_NATS_URL": s.ClientURL(), "HAIL_NATS_USER": "discovery", "HAIL_NATS_PASSWORD": "pw-discovery",
			"HAIL_NATS_INBOX_PREFIX": roles.Discovery(events.Subjects{}).InboxPrefix(), "HAIL_REMOTE_REGIONS": "us",
		}), io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	nc := bustest.Connect(t, s.ClientURL(), nats.UserInfo("console", "pw-console"), nats.CustomInboxPrefix(roles.Console(events.Subjects{}).InboxPrefix()))
	bustest.Eventually(t, 30*time.Second, func() error {
		m, err := nc.Request("hail.discovery.instances", []byte(`{"region":"us"}`), 5*time.Second)
		if err != nil {
			return err
		}
		if string(m.Data) != "[]" {
			return fmt.Errorf("region us: %s", m.Data)
		}
		return nil
	})
}
