package bus_test

import (
	"errors"
	"testing"
	"time"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
)

func TestReachable(t *testing.T) {
	// No registry yet: not reachable; once the buckets exist: reachable.
	s := bustest.RunServer(t)
	nc := bustest.Connect(t, s.ClientURL())
	probe, err := bus.NewProbe(nc, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	ready := probe.Reachable
	if ready() {
		t.Fatal("reachable before hail_instances exists")
	}
	done := make(chan error, 1)
	go func() { done <- probe.Run(t.Context()) }()
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Errorf("probe Run: %v", err)
		}
	})
	bustest.Buckets(t, nc)
	bustest.Eventually(t, 5*time.Second, func() error {
		if !ready() {
			return errors.New("not reachable with the buckets there")
		}
		return nil
	})
	// The server gone: not reachable.
	s.Shutdown()
	s.WaitForShutdown()
	bustest.Eventually(t, 5*time.Second, func() error {
		if ready() {
			return errors.New("still reachable with the server gone")
		}
		return nil
	})
}
