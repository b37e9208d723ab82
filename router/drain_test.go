package router_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/echo"
	"github.com/hailsd/hail/instance"
)

// An instance that leaves through the SDK (deregister, drain, stop) under
// load costs no caller an error.
func TestGracefulDrainUnderLoad(t *testing.T) {
	e := newEnv(t)
	var insts []*instance.Instance
	for range 3 {
		inst, err := echo.Start(t.Context(), bustest.Connect(t, e.URL), instance.Config{Service: "echo"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = inst.Shutdown(t.Context()) })
		insts = append(insts, inst)
	}
	bustest.Eventually(t, 10*time.Second, func() error {
		v := e.router.Table().View("echo")
		if v == nil || v.Endpoint("slow") == nil || v.Endpoint("slow").Picker == nil {
			return errors.New("echo.slow not routable")
		}
		return nil
	})
	// "slow" with 5 ms keeps requests in flight at the instance while it
	// drains.
	lw := e.loadMsg(16, &nats.Msg{Subject: subjects.Route("echo", "slow"), Data: []byte("5")}, 5*time.Second)
	before := lw.count()
	bustest.Eventually(t, 5*time.Second, func() error {
		if lw.count() < before+500 {
			return errors.New("load not flowing")
		}
		return nil
	})
	if err := insts[0].Shutdown(t.Context()); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	after := lw.count()
	bustest.Eventually(t, 10*time.Second, func() error {
		if lw.count() < after+1000 {
			return fmt.Errorf("%d requests since the shutdown", lw.count()-after)
		}
		return nil
	})
	lw.finish()
	if lw.errorList() != "" {
		t.Fatalf("%d of %d requests failed: %s", len(lw.errors), lw.total, lw.errorList())
	}
	t.Logf("%d requests, 0 failed", lw.total)
}
