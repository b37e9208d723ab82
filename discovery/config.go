package discovery

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/heartbeat"
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
}

// SelfPreservation is Eureka's idea: when more than Share of the
// instances a node owns that are not critical are failing their
// heartbeats at once, and at least MinFailures of them, the node takes it
// for its own fault (it is cut off, not they) and holds their judgement
// that round. It holds an instance's silence for MaxDuration at most, and
// counts only steady instances, so that instances registered to fall
// silent together cannot keep it from judging a dead one for long.
type SelfPreservation struct {
	// Share of the instances not critical. Default 0.5.
	Share float64 `koanf:"share"`
	// MinFailures failing at once. Default 5.
	MinFailures int `koanf:"min_failures"`
	// MaxDuration an instance's silence is held: one silent for longer
	// is judged as usual, so self-preservation ends on its own this long
	// after it starts unless the instances answer again. Default 30s.
	MaxDuration time.Duration `koanf:"max_duration"`
	// SteadyAfter: an instance counts toward self-preservation only if
	// it fell silent at least this long after it was registered. Default
	// 1m.
	SteadyAfter time.Duration `koanf:"steady_after"`
}

// Heartbeat is PROTOCOL.md's heartbeat timing.
type Heartbeat struct {
	// Interval between heartbeats. Default 1s.
	Interval time.Duration `koanf:"interval"`
	// Timeout for a heartbeat reply. Default 500ms.
	Timeout time.Duration `koanf:"timeout"`
	// MissedToCritical heartbeats in a row make an instance critical.
	// Default 3.
	MissedToCritical int `koanf:"missed_to_critical"`
	// AnsweredToPassing heartbeats in a row bring it back. Default 1.
	AnsweredToPassing int `koanf:"answered_to_passing"`
}

// Thresholds are h's for the judge.
func (h Heartbeat) Thresholds() heartbeat.Thresholds {
	return heartbeat.Thresholds{FailuresToCritical: h.MissedToCritical, SuccessesToPassing: h.AnsweredToPassing}
}

// Timing is the part of a node's config it can change while running
// (Reconfigure): heartbeat timing and thresholds, removal,
// self-preservation. Its fields are the discovery program's config keys of
// the same names; DefaultTiming holds the defaults, in one place.
type Timing struct {
	Heartbeat Heartbeat `koanf:"heartbeat"`
	// DeregisterAfter is how long an instance stays critical before its
	// record is removed. Default 60s.
	DeregisterAfter  time.Duration    `koanf:"deregister_after"`
	SelfPreservation SelfPreservation `koanf:"self_preservation"`
}

// DefaultTiming is PROTOCOL.md's timing.
func DefaultTiming() Timing {
	th := heartbeat.DefaultThresholds
	return Timing{
		Heartbeat:        Heartbeat{Interval: time.Second, Timeout: 500 * time.Millisecond, MissedToCritical: th.FailuresToCritical, AnsweredToPassing: th.SuccessesToPassing},
		DeregisterAfter:  60 * time.Second,
		SelfPreservation: SelfPreservation{Share: 0.5, MinFailures: 5, MaxDuration: 30 * time.Second, SteadyAfter: time.Minute},
	}
}

func (c *Config) setDefaults() {
	d := DefaultTiming()
	if c.SelfPreservation.Share == 0 {
		c.SelfPreservation.Share = d.SelfPreservation.Share
	}
	if c.SelfPreservation.MinFailures == 0 {
		c.SelfPreservation.MinFailures = d.SelfPreservation.MinFailures
	}
	if c.SelfPreservation.MaxDuration == 0 {
		c.SelfPreservation.MaxDuration = d.SelfPreservation.MaxDuration
	}
	if c.SelfPreservation.SteadyAfter == 0 {
		c.SelfPreservation.SteadyAfter = d.SelfPreservation.SteadyAfter
	}
	if c.Heartbeat.Interval == 0 {
		c.Heartbeat.Interval = d.Heartbeat.Interval
	}
	if c.Heartbeat.Timeout == 0 {
		c.Heartbeat.Timeout = d.Heartbeat.Timeout
	}
	if c.Heartbeat.MissedToCritical == 0 {
		c.Heartbeat.MissedToCritical = d.Heartbeat.MissedToCritical
	}
	if c.Heartbeat.AnsweredToPassing == 0 {
		c.Heartbeat.AnsweredToPassing = d.Heartbeat.AnsweredToPassing
	}
	if c.DeregisterAfter == 0 {
		c.DeregisterAfter = d.DeregisterAfter
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
	if c.Heartbeat.Interval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("heartbeat interval %v is below 10ms", c.Heartbeat.Interval))
	}
	if c.Heartbeat.Timeout <= 0 || c.Heartbeat.Timeout >= c.Heartbeat.Interval {
		errs = append(errs, fmt.Errorf("heartbeat timeout %v must be above 0 and below the interval %v", c.Heartbeat.Timeout, c.Heartbeat.Interval))
	}
	if c.Heartbeat.MissedToCritical < 1 || c.Heartbeat.AnsweredToPassing < 1 {
		errs = append(errs, errors.New("heartbeat thresholds must be at least 1"))
	}
	if c.SelfPreservation.Share <= 0 || c.SelfPreservation.Share > 1 {
		errs = append(errs, fmt.Errorf("self-preservation share %g is out of range (0, 1]", c.SelfPreservation.Share))
	}
	if c.SelfPreservation.MinFailures < 1 {
		errs = append(errs, fmt.Errorf("self-preservation min failures %d is below 1", c.SelfPreservation.MinFailures))
	}
	if c.SelfPreservation.MaxDuration <= 0 {
		errs = append(errs, fmt.Errorf("self-preservation max duration %v is not above 0", c.SelfPreservation.MaxDuration))
	}
	if c.SelfPreservation.SteadyAfter < 0 {
		errs = append(errs, fmt.Errorf("self-preservation steady after %v is negative", c.SelfPreservation.SteadyAfter))
	}
	if c.DeregisterAfter < 0 {
		errs = append(errs, fmt.Errorf("deregister after %v is negative", c.DeregisterAfter))
	}
	return errors.Join(errs...)
}

// liveTiming is the timing in force: Reconfigure swaps it while the node
// runs, and the next round, announce or refresh reads the new one.
type liveTiming struct{ p atomic.Pointer[Timing] }

func newLiveTiming(t Timing) *liveTiming {
	l := &liveTiming{}
	l.p.Store(&t)
	return l
}

func (l *liveTiming) load() Timing { return *l.p.Load() }

// swap puts t in force and returns the timing it replaced.
func (l *liveTiming) swap(t Timing) Timing { return *l.p.Swap(&t) }
