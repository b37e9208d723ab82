package router

import (
	"fmt"
	"time"

	"github.com/hailsd/hail/events"
)

// RouteDefaults are the router's own routing policy, what a service's
// hail_config route overrides field by field: the router program's
// `route` section. DefaultRoute holds the defaults, in one place.
type RouteDefaults struct {
	// Strategy when a route names none. Default weighted.
	Strategy string `koanf:"strategy"`
	// Timeout of a whole routed call, retries included. Default 5s.
	Timeout time.Duration `koanf:"timeout"`
	// Retries after no responders. Default 2.
	Retries int `koanf:"retries"`
	// HashLoadFactor bounds the hash strategy's in-flight requests per
	// instance at this multiple of its share of the mean. Default 1.25.
	HashLoadFactor float64 `koanf:"hash_load_factor"`
	// WarningWeight is the fraction of its weight a warning instance
	// keeps; 0 takes warning instances out like critical ones. Default 0.1.
	WarningWeight float64 `koanf:"warning_weight"`
	// RetryBudget is the share of a retry each request earns (Finagle's
	// and Linkerd's retry budget), so an outage does not multiply load.
	// Default 0.2.
	RetryBudget float64 `koanf:"retry_budget"`
	// MinRetriesPerSecond are allowed whatever the budget. Default 10.
	MinRetriesPerSecond float64 `koanf:"min_retries_per_second"`
}

// DefaultRoute is the routing policy a router starts from.
func DefaultRoute() RouteDefaults {
	return RouteDefaults{Strategy: events.DefaultStrategy, Timeout: 5 * time.Second, Retries: 2, HashLoadFactor: 1.25,
		WarningWeight: 0.1, RetryBudget: 0.2, MinRetriesPerSecond: 10}
}

// Validate checks the defaults.
func (d RouteDefaults) Validate() error {
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
	if d.RetryBudget <= 0 || d.RetryBudget > 1 {
		return fmt.Errorf("retry budget %g is out of range (0, 1]", d.RetryBudget)
	}
	if d.MinRetriesPerSecond <= 0 {
		return fmt.Errorf("min retries per second %g must be positive", d.MinRetriesPerSecond)
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
func (d RouteDefaults) resolve(c events.RouteConfig) Route {
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
