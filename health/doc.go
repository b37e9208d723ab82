// Package health runs the local checks of PROTOCOL v1.1 the way Consul
// runs them: one small type per kind, each with one method that runs one
// probe under a context (http.go, tcp.go, script.go; ttl.go is reported
// rather than probed), and Judge, the pure function that turns a run of
// results into a check's status under Consul's thresholds.
//
// The gRPC check (grpc.health.v1) is not here: grpc-go's module requires
// OpenTelemetry and cloud modules, which would enter the module graph of
// every service importing hail's SDK. It belongs with the agent, in a
// module of its own.
package health

import (
	"time"

	"github.com/hailsd/hail/events"
)

// Result is one probe's outcome.
type Result struct {
	Status events.Status
	Output string
}

// MaxOutput bounds a result's output, as PROTOCOL.md bounds CheckResult's.
const MaxOutput = events.MaxCheckOutput

// DefaultTimeout bounds a probe when its check sets none; a timeout is
// also capped at the check's interval.
const DefaultTimeout = 10 * time.Second

func result(s events.Status, output string) Result {
	return Result{Status: s, Output: events.CutOutput(output, MaxOutput)}
}
