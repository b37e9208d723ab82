package router

import (
	"fmt"
	"time"

	"github.com/hailsd/hail/events"
)

// Defaults are the router's own routing policy; a service's hail_config
// route overrides them field by field.
type Defaults struct {
	// Strategy is used when a route names none; default "weighted".
	Strategy string
	// Timeout bounds a whole routed call, retries included; default 5s.
	Timeout time.Duration
	// Retries is the extra attempts after no-responders; default 2.
	Retries int
	// HashLoadFactor bounds the hash strategy's in-flight requests per
	// instance at this multiple of its share of the mean; default 1.25.
	HashLoadFactor float64
	// WarningWeight is the fraction of its weight a warning instance
	// keeps; 0 takes warning instances out like critical ones. Default 0.1.
	WarningWeight float64
}

// DefaultDefaults are the defaults the router program starts from.
func DefaultDefaults() Defaults {
	return Defaults{Strategy: events.DefaultStrategy, Timeout: 5 * time.Second, Retries: 2, HashLoadFactor: 1.25, WarningWeight: 0.1}
}

// Validate checks the defaults.
func (d Defaults) Validate() error {
	c := events.RouteConfig{Strategy: d.Strategy, Retries: &d.Retries, TimeoutMS: int(d.Timeout / time.Millisecond), HashLoadFactor: d.HashLoadFactor}
	if err := c.Validate(); err != nil {
		return err
	}
	if d.Timeout <= 0 {
		return fmt.Errorf("timeout %s must be positive", d.Timeout)
	}
	if d.WarningWeight < 0 || d.WarningWeight > 1 {
		return fmt.Errorf("warning weight %g is out of range 0..1", d.WarningWeight)
	}
	return nil
}

// Route is the policy in force for one service.
type Route struct {
	Strategy       string
	HashHeader     string
	Retries        int
	Timeout        time.Duration
	RetryOnTimeout bool
	HashLoadFactor float64
	Weights        map[string]int
}

// resolve lays a validated RouteConfig over d.
func (d Defaults) resolve(c events.RouteConfig) Route {
	r := Route{
		Strategy: d.Strategy, HashHeader: events.HeaderKey, Retries: d.Retries, Timeout: d.Timeout,
		RetryOnTimeout: c.RetryOnTimeout, HashLoadFactor: d.HashLoadFactor, Weights: c.Weights,
	}
	if c.Strategy != "" {
		r.Strategy = c.Strategy
	}
	if c.HashHeader != "" {
		r.HashHeader = c.HashHeader
	}
	if c.Retries != nil {
		r.Retries = *c.Retries
	}
	if c.TimeoutMS > 0 {
		r.Timeout = time.Duration(c.TimeoutMS) * time.Millisecond
	}
	if c.HashLoadFactor > 0 {
		r.HashLoadFactor = c.HashLoadFactor
	}
	return r
}

// NewPicker builds the picker of a strategy over targets, whose weights
// must be positive. loadFactor matters to "hash" only.
func NewPicker(strategy string, targets []*Target, loadFactor float64) (Picker, error) {
	switch strategy {
	case "weighted", "":
		return newWeighted(targets), nil
	case "hash":
		return newHashRing(targets, loadFactor, newWeighted(targets)), nil
	case "round_robin":
		return newRoundRobin(targets), nil
	case "random":
		return newRandom(targets), nil
	case "least_conn":
		return newLeastConn(targets), nil
	case "p2c_ewma":
		return newP2CEWMA(targets), nil
	}
	return nil, fmt.Errorf("unknown strategy %q", strategy)
}
