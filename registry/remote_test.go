package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/registry"
)

func TestFreshRegions(t *testing.T) {
	transform := func(region string) []jetstream.SubjectTransformConfig {
		return []jetstream.SubjectTransformConfig{{Source: "$KV.hail_instances.>", Destination: "$KV.hail_remote." + region + ".>"}}
	}
	tests := []struct {
		name   string
		source jetstream.StreamSourceInfo
		want   map[string]bool
	}{
		{"active", jetstream.StreamSourceInfo{Active: time.Second, SubjectTransforms: transform("eu")}, map[string]bool{"eu": true}},
		{"inactive for remote_stale", jetstream.StreamSourceInfo{Active: 10 * time.Second, SubjectTransforms: transform("eu")}, map[string]bool{"eu": true}},
		{"inactive too long", jetstream.StreamSourceInfo{Active: 10*time.Second + time.Millisecond, SubjectTransforms: transform("eu")}, map[string]bool{}},
		{"never heard from", jetstream.StreamSourceInfo{Active: -1, SubjectTransforms: transform("eu")}, map[string]bool{}},
		{"failing", jetstream.StreamSourceInfo{Active: time.Second, SubjectTransforms: transform("eu"), Error: &jetstream.APIError{Code: 503}}, map[string]bool{}},
		{"by domain", jetstream.StreamSourceInfo{Active: time.Second, External: &jetstream.ExternalStream{APIPrefix: "$JS.us.API"}}, map[string]bool{"us": true}},
		{"no region named", jetstream.StreamSourceInfo{Active: time.Second}, map[string]bool{}},
		{"not a region", jetstream.StreamSourceInfo{Active: time.Second, SubjectTransforms: transform("E*U")}, map[string]bool{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := registry.FreshRegions([]*jetstream.StreamSourceInfo{&tt.source, nil}, 10*time.Second)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("FreshRegions = %v, want %v", got, tt.want)
			}
		})
	}
}

func record(service string) events.InstanceRecord {
	return events.InstanceRecord{Announce: events.Announce{ID: uuid.NewString(), Service: service, Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100},
		Status: events.Passing, Node: uuid.NewString()}
}

func put(t *testing.T, kv jetstream.KeyValue, key string, v any) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), key, data); err != nil {
		t.Fatal(err)
	}
}

// The follower of hail_remote knows each region's records as its source
// brings them, ignores what is not a record of its key, and turns a
// region stale once its source stops.
func TestRemoteFollowsRegions(t *testing.T) {
	s := bustest.RunServer(t)
	nc := bustest.Connect(t, s.ClientURL())
	regions := bustest.RemoteBucket(t, nc, "eu", "us")
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var invalid atomic.Int64
	r := registry.NewRemote(js, registry.RemoteConfig{FollowConfig: registry.FollowConfig{Invalid: func() { invalid.Add(1) }},
		StaleAfter: 3 * time.Second, CheckEvery: 50 * time.Millisecond})
	changes := make(chan registry.RemoteChange, 100)
	defer r.Subscribe(func(c registry.RemoteChange) { changes <- c })()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	eu, us := record("echo"), record("echo")
	put(t, regions["eu"], eu.Key(), eu)
	put(t, regions["us"], us.Key(), us)
	bustest.Eventually(t, 10*time.Second, func() error {
		if got := r.Service("eu", "echo"); len(got) != 1 || got[0].ID != eu.ID {
			return fmt.Errorf("eu's echo: %v", got)
		}
		if got := r.Service("us", "echo"); len(got) != 1 || got[0].ID != us.ID {
			return fmt.Errorf("us's echo: %v", got)
		}
		if r.Stale("eu") || r.Stale("us") {
			return errors.New("regions with active sources are stale")
		}
		return nil
	})
	if got := fmt.Sprint(r.Regions()); got != "[eu us]" {
		t.Errorf("Regions() = %s", got)
	}

	// Not a record of its key, and not a key of hail_remote: ignored.
	remote, err := js.KeyValue(t.Context(), bus.RemoteBucket)
	if err != nil {
		t.Fatal(err)
	}
	put(t, remote, "eu.echo."+uuid.NewString(), eu)
	put(t, remote, "EU.echo."+eu.ID, eu)
	bustest.Eventually(t, 10*time.Second, func() error {
		if invalid.Load() != 2 {
			return fmt.Errorf("%d invalid entries counted, want 2", invalid.Load())
		}
		return nil
	})
	if got := r.Service("eu", "echo"); len(got) != 1 {
		t.Errorf("eu's echo after bad entries: %v", got)
	}

	if err := regions["eu"].Delete(t.Context(), eu.Key()); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 10*time.Second, func() error {
		if got := r.Service("eu", "echo"); len(got) != 0 {
			return fmt.Errorf("eu's echo after its delete: %v", got)
		}
		return nil
	})

	// eu's registry goes (its region lost): its source stops, and eu
	// turns stale while us stays fresh.
	if err := js.DeleteKeyValue(t.Context(), "eu_instances"); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 15*time.Second, func() error {
		if !r.Stale("eu") {
			return errors.New("eu not stale after its source stopped")
		}
		return nil
	})
	if r.Stale("us") {
		t.Error("us stale while its source runs")
	}
	for {
		select {
		case c := <-changes:
			if c.Freshness && c.Region == "eu" && c.Stale {
				return
			}
		default:
			t.Fatal("no change told that eu turned stale")
		}
	}
}
