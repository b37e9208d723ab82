package discovery_test

import (
	"strings"
	"testing"
	"time"

	"github.com/hailsd/hail/discovery"
)

// Timing.Validate names each wrong key as the discovery program's config
// does, so the program wraps it instead of restating its rules.
func TestTimingValidateNamesKeys(t *testing.T) {
	tests := []struct {
		name string
		edit func(*discovery.Timing)
		want string
	}{
		{"defaults", func(*discovery.Timing) {}, ""},
		{"interval", func(c *discovery.Timing) { c.Heartbeat.Interval = time.Millisecond }, "heartbeat.interval: 1ms is below 10ms"},
		{"timeout", func(c *discovery.Timing) { c.Heartbeat.Timeout = 2 * time.Second }, "heartbeat.timeout: 2s must be above 0"},
		{"missed", func(c *discovery.Timing) { c.Heartbeat.MissedToCritical = 0 }, "heartbeat.missed_to_critical: 0 is below 1"},
		{"answered", func(c *discovery.Timing) { c.Heartbeat.AnsweredToPassing = 0 }, "heartbeat.answered_to_passing: 0 is below 1"},
		{"deregister", func(c *discovery.Timing) { c.DeregisterAfter = -time.Second }, "deregister_after: -1s is negative"},
		{"share", func(c *discovery.Timing) { c.SelfPreservation.Share = 2 }, "self_preservation.share: 2 is out of range"},
		{"min failures", func(c *discovery.Timing) { c.SelfPreservation.MinFailures = 0 }, "self_preservation.min_failures: 0 is below 1"},
		{"max duration", func(c *discovery.Timing) { c.SelfPreservation.MaxDuration = 0 }, "self_preservation.max_duration: 0s is not above 0"},
		{"steady after", func(c *discovery.Timing) { c.SelfPreservation.SteadyAfter = -time.Second }, "self_preservation.steady_after: -1s is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := discovery.DefaultTiming()
			tt.edit(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("got %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}
