package router

import (
	"errors"
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

// Validate checks the defaults and names each wrong key relative to the
// router program's route section, which wraps it (config.Section). What a stored route may also set (strategy,
// retries, hash load factor, timeout) is checked by the one rule of a
// route, events.RouteConfig's; defaults must besides set each of them.
func (d RouteDefaults) Validate() error {
	var errs []error
	field := func(key string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
	}
	asRoute := func(c events.RouteConfig) error { return c.Validate() }
	if d.Strategy == "" {
		field("strategy", errors.New("is empty"))
	}
	field("strategy", asRoute(events.RouteConfig{Strategy: d.Strategy}))
	field("retries", asRoute(events.RouteConfig{Retries: &d.Retries}))
	if d.HashLoadFactor == 0 {
		field("hash_load_factor", errors.New("is unset; it must be above 1"))
	}
	field("hash_load_factor", asRoute(events.RouteConfig{HashLoadFactor: d.HashLoadFactor}))
	if d.Timeout <= 0 {
		field("timeout", fmt.Errorf("%s must be positive", d.Timeout))
	} else if err := asRoute(events.RouteConfig{TimeoutMS: int(min(d.Timeout, time.Hour) / time.Millisecond)}); err != nil {
		field("timeout", fmt.Errorf("%s is above a route's limit: %w", d.Timeout, err))
	}
	if d.WarningWeight < 0 || d.WarningWeight > 1 {
		field("warning_weight", fmt.Errorf("%g is out of range 0..1", d.WarningWeight))
	}
	if d.RetryBudget <= 0 || d.RetryBudget > 1 {
		field("retry_budget", fmt.Errorf("%g is out of range (0, 1]", d.RetryBudget))
	}
	if d.MinRetriesPerSecond <= 0 {
		field("min_retries_per_second", fmt.Errorf("%g must be positive", d.MinRetriesPerSecond))
	}
	return errors.Join(errs...)
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
	// ZoneAware: a router with an az prefers its own zone (PROTOCOL
	// v1.5). On unless the route turns it off.
	ZoneAware bool
}

// resolve lays a validated RouteConfig over d.
func (d RouteDefaults) resolve(c events.RouteConfig) Route {
	r := Route{
		Strategy: d.Strategy, HashHeader: events.HeaderKey, Retries: d.Retries, Timeout: d.Timeout,
		RetryOnTimeout: c.RetryOnTimeout, HashLoadFactor: d.HashLoadFactor, Weights: c.Weights,
		ZoneAware: c.ZoneAware == nil || *c.ZoneAware,
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
