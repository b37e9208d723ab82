package agent

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/hailsd/hail/events"
)

// A heartbeat reply stays under the control limit by cutting outputs,
// longest first, never by dropping a check.
func TestFitChecks(t *testing.T) {
	long := strings.Repeat("x", events.MaxCheckOutput)
	var checks []events.CheckResult
	for i := range 20 {
		out := "short"
		if i%2 == 0 {
			out = long
		}
		checks = append(checks, events.CheckResult{Name: "c" + strings.Repeat("x", i), Kind: events.CheckScript, Status: events.Warning, Output: out})
	}
	const limit = 16 << 10
	got := fitChecks(checks, limit)
	data, _ := json.Marshal(got)
	if len(data) > limit {
		t.Errorf("%d bytes, limit %d", len(data), limit)
	}
	if len(got) != len(checks) {
		t.Fatalf("%d checks, want all %d", len(got), len(checks))
	}
	for i := range got {
		if got[i].Name != checks[i].Name || got[i].Status != checks[i].Status {
			t.Errorf("check %d changed: %+v", i, got[i])
		}
		if checks[i].Output == "short" && got[i].Output != "short" {
			t.Errorf("a short output was cut before the long ones: %q", got[i].Output)
		}
	}
	if small := checks[1:2]; len(fitChecks(small, limit)) != 1 || fitChecks(small, limit)[0].Output != "short" {
		t.Error("checks under the limit changed")
	}
}
