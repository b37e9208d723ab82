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
	"regexp"
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

// result is what every probe's outcome goes through: its output is stored
// in the registry and shown to whoever may read the instances, so the
// credentials of a check's URL are taken out of it first.
func result(s events.Status, output string) Result {
	return Result{Status: s, Output: events.CutOutput(Redact(output), MaxOutput)}
}

// userinfo is the user information of a URL (scheme://user:password@),
// through the last @ before the host ends, as a parser reads it.
var userinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@`)

// Redact is text with the user information of every URL in it (a
// password, or a token in the user part) made REDACTED: a check's URL as
// a probe writes it, and as net/http's errors quote it (user:***@).
func Redact(text string) string { return userinfo.ReplaceAllString(text, "${1}REDACTED@") }
