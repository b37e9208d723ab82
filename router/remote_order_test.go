package router

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/registry"
)

// Regions are tried nearest first: those the router names, in its order,
// then the others by the latency measured on their instances (unmeasured
// last), then by name.
func TestRegionOrder(t *testing.T) {
	s := bustest.RunServer(t)
	nc := bustest.Connect(t, s.ClientURL())
	regions := bustest.RemoteBucket(t, nc, "ap", "eu", "sa", "us", "za")
	for _, kv := range regions {
		rec := events.InstanceRecord{Announce: events.Announce{ID: uuid.NewString(), Service: "echo", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100},
			Status: events.Passing, Node: uuid.NewString()}
		data, _ := json.Marshal(rec)
		if _, err := kv.Put(t.Context(), rec.Key(), data); err != nil {
			t.Fatal(err)
		}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	remote := registry.NewRemote(js, registry.RemoteConfig{StaleAfter: 5 * time.Second, CheckEvery: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- remote.Run(ctx) }()
	defer func() { cancel(); <-done }()

	tab, err := NewTable(nil, TableConfig{RemoteRegions: []string{"us", "eu"}})
	if err != nil {
		t.Fatal(err)
	}
	tab.remote = remote
	svc := tab.service("echo")
	for region, latency := range map[string]time.Duration{"eu": 9 * time.Millisecond, "sa": 30 * time.Millisecond, "za": 2 * time.Millisecond} {
		l := newLoad(nil, nil)
		l.observe(Result{Latency: latency, At: time.Now()})
		svc.region(region, tab).loads[uuid.NewString()] = l
	}
	bustest.Eventually(t, 15*time.Second, func() error {
		var got []string
		for _, a := range tab.abroad("echo") {
			got = append(got, a.region)
		}
		if want := "[us eu za sa ap]"; fmt.Sprint(got) != want {
			return fmt.Errorf("order %v, want %s", got, want)
		}
		return nil
	})
}
