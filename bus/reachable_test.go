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
	ready := bus.Reachable(t.Context(), nc, 20*time.Millisecond)
	if ready() {
		t.Fatal("reachable before hail_instances exists")
	}
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
