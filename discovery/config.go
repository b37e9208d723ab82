// Package discovery is a hail discovery node: it takes announces and
// deregisters, heartbeats the instances it owns, judges their health,
// records transitions in hail_instances, publishes health events, and
// answers registry queries from memory.
package discovery

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/heartbeat"
	"github.com/hailsd/hail/registry"
)

// Config of a node. Zero fields take PROTOCOL.md's defaults.
type Config struct {
	NodeID   string // default: a new UUID per start
	AZ       string
	Hostname string
	Subjects events.Subjects
	Timing
	Logger  *slog.Logger
	Metrics *metrics.Set
	// Registry is the program's follower of hail_instances, run by the
	// program and shared with its console; nil: the node runs its own.
	Registry *registry.Follower
}

// SelfPreservation is Eureka's idea: when more than Share of the
// instances a node owns that are not critical are failing their
// heartbeats at once, and at least MinFailures of them, the node takes it
// for its own fault (it is cut off, not they) and judges nothing that
// round.
type SelfPreservation struct {
	Share       float64 // default 0.5
	MinFailures int     // default 5
}

// Timing is the part of a node's config it can change while running
// (Reconfigure): heartbeat timing and thresholds, removal, self-preservation.
type Timing struct {
	HeartbeatInterval time.Duration        // default 1s
	HeartbeatTimeout  time.Duration        // default 500ms
	Thresholds        heartbeat.Thresholds // default 3 missed, 1 answered
	DeregisterAfter   time.Duration        // time critical before removal; default 60s
	SelfPreservation  SelfPreservation
}

func (c *Config) setDefaults() {
	if c.SelfPreservation.Share == 0 {
		c.SelfPreservation.Share = 0.5
	}
	if c.SelfPreservation.MinFailures == 0 {
		c.SelfPreservation.MinFailures = 5
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = time.Second
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = 500 * time.Millisecond
	}
	if c.Thresholds.FailuresToCritical == 0 {
		c.Thresholds.FailuresToCritical = heartbeat.DefaultThresholds.FailuresToCritical
	}
	if c.Thresholds.SuccessesToPassing == 0 {
		c.Thresholds.SuccessesToPassing = heartbeat.DefaultThresholds.SuccessesToPassing
	}
	if c.DeregisterAfter == 0 {
		c.DeregisterAfter = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = metrics.NewSet()
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.NodeID != "" {
		if err := events.ValidateID(c.NodeID); err != nil {
			errs = append(errs, fmt.Errorf("node id: %w", err))
		}
	}
	return errors.Join(append(errs, c.Timing.validate())...)
}

func (c Timing) validate() error {
	var errs []error
	if c.HeartbeatInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("heartbeat interval %v is below 10ms", c.HeartbeatInterval))
	}
	if c.HeartbeatTimeout <= 0 || c.HeartbeatTimeout >= c.HeartbeatInterval {
		errs = append(errs, fmt.Errorf("heartbeat timeout %v must be above 0 and below the interval %v", c.HeartbeatTimeout, c.HeartbeatInterval))
	}
	if c.Thresholds.FailuresToCritical < 1 || c.Thresholds.SuccessesToPassing < 1 {
		errs = append(errs, errors.New("heartbeat thresholds must be at least 1"))
	}
	if c.SelfPreservation.Share <= 0 || c.SelfPreservation.Share > 1 {
		errs = append(errs, fmt.Errorf("self-preservation share %g is out of range (0, 1]", c.SelfPreservation.Share))
	}
	if c.SelfPreservation.MinFailures < 1 {
		errs = append(errs, fmt.Errorf("self-preservation min failures %d is below 1", c.SelfPreservation.MinFailures))
	}
	if c.DeregisterAfter < 0 {
		errs = append(errs, fmt.Errorf("deregister after %v is negative", c.DeregisterAfter))
	}
	return errors.Join(errs...)
}
