package discovery

import (
	"cmp"
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
	// Region of the node (PROTOCOL v1.5); default the JetStream domain
	// of its server, else local.
	Region string
	// RemoteRegions are sourced into hail_remote; default none.
	RemoteRegions []string
	// RemoteStale: a remote region whose source has not delivered (or
	// heartbeat) for this long is stale. Default 10s.
	RemoteStale time.Duration
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
	d, hb, sp := DefaultTiming(), &c.Heartbeat, &c.SelfPreservation
	sp.Share = cmp.Or(sp.Share, d.SelfPreservation.Share)
	sp.MinFailures = cmp.Or(sp.MinFailures, d.SelfPreservation.MinFailures)
	sp.MaxDuration = cmp.Or(sp.MaxDuration, d.SelfPreservation.MaxDuration)
	sp.SteadyAfter = cmp.Or(sp.SteadyAfter, d.SelfPreservation.SteadyAfter)
	hb.Interval = cmp.Or(hb.Interval, d.Heartbeat.Interval)
	hb.Timeout = cmp.Or(hb.Timeout, d.Heartbeat.Timeout)
	hb.MissedToCritical = cmp.Or(hb.MissedToCritical, d.Heartbeat.MissedToCritical)
	hb.AnsweredToPassing = cmp.Or(hb.AnsweredToPassing, d.Heartbeat.AnsweredToPassing)
	c.DeregisterAfter = cmp.Or(c.DeregisterAfter, d.DeregisterAfter)
	c.RemoteStale = cmp.Or(c.RemoteStale, DefaultRemoteStale)
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
	if c.Region != "" {
		if err := events.ValidateRegion(c.Region); err != nil {
			errs = append(errs, fmt.Errorf("region: %w", err))
		}
	}
	errs = append(errs, validateRemote(c.Region, c.RemoteRegions, c.RemoteStale))
	return errors.Join(append(errs, c.Timing.Validate())...)
}

// Validate checks the timing. Each error names its key as the discovery
// program's config does, which takes Timing's keys as its own: the
// program wraps this, it does not restate it.
func (c Timing) Validate() error {
	var errs []error
	field := func(key string, err error) { errs = append(errs, fmt.Errorf("%s: %w", key, err)) }
	hb, sp := c.Heartbeat, c.SelfPreservation
	if hb.Interval < 10*time.Millisecond {
		field("heartbeat.interval", fmt.Errorf("%v is below 10ms", hb.Interval))
	}
	if hb.Timeout <= 0 || hb.Timeout >= hb.Interval {
		field("heartbeat.timeout", fmt.Errorf("%v must be above 0 and below heartbeat.interval (%v)", hb.Timeout, hb.Interval))
	}
	if hb.MissedToCritical < 1 {
		field("heartbeat.missed_to_critical", fmt.Errorf("%d is below 1", hb.MissedToCritical))
	}
	if hb.AnsweredToPassing < 1 {
		field("heartbeat.answered_to_passing", fmt.Errorf("%d is below 1", hb.AnsweredToPassing))
	}
	if c.DeregisterAfter < 0 {
		field("deregister_after", fmt.Errorf("%v is negative", c.DeregisterAfter))
	}
	if sp.Share <= 0 || sp.Share > 1 {
		field("self_preservation.share", fmt.Errorf("%g is out of range (0, 1]", sp.Share))
	}
	if sp.MinFailures < 1 {
		field("self_preservation.min_failures", fmt.Errorf("%d is below 1", sp.MinFailures))
	}
	if sp.MaxDuration <= 0 {
		field("self_preservation.max_duration", fmt.Errorf("%v is not above 0", sp.MaxDuration))
	}
	if sp.SteadyAfter < 0 {
		field("self_preservation.steady_after", fmt.Errorf("%v is negative", sp.SteadyAfter))
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
