package events

import (
	"slices"
	"strings"
)

// Strategies a RouteConfig may name.
var Strategies = []string{"weighted", "hash", "round_robin", "random", "least_conn", "p2c_ewma"}

// DefaultStrategy is used when a route names none.
const DefaultStrategy = "weighted"

// RouteConfigKey is the hail_config key of a service's route.
func RouteConfigKey(service string) string { return "route." + service }

// ParseRouteConfigKey returns the service of a hail_config route key.
func ParseRouteConfigKey(key string) (string, error) {
	service, ok := strings.CutPrefix(key, RouteConfigKey(""))
	if !ok {
		return "", invalid("key %q is not %s<service>", truncate(key), RouteConfigKey(""))
	}
	if err := ValidateService(service); err != nil {
		return "", err
	}
	return service, nil
}

// RouteConfig is the value of hail_config route.<service>. A field left
// out takes the router's default.
type RouteConfig struct {
	Strategy   string `json:"strategy,omitempty" hail:"nonempty"`
	HashHeader string `json:"hash_header,omitempty"`
	// Retries is a pointer because 0 ("never retry") differs from unset.
	Retries        *int `json:"retries,omitempty"`
	TimeoutMS      int  `json:"timeout_ms,omitempty"`
	RetryOnTimeout bool `json:"retry_on_timeout,omitempty"`
	// HashLoadFactor bounds the hash strategy's load per instance at this
	// multiple of the mean (1 < f <= 10); this repository's addition.
	HashLoadFactor float64        `json:"hash_load_factor,omitempty"`
	Weights        map[string]int `json:"weights,omitempty"`
	// ZoneAware, when false, turns off a router's preference for its own
	// zone for this service (PROTOCOL v1.5); absent means on.
	ZoneAware *bool `json:"zone_aware,omitempty"`
}

// Validate checks a route config; an invalid one must never replace a good one.
func (c *RouteConfig) Validate() error {
	if c.Strategy != "" && !slices.Contains(Strategies, c.Strategy) {
		return invalid("strategy %q is not one of %s", c.Strategy, strings.Join(Strategies, ", "))
	}
	if strings.ContainsAny(c.HashHeader, " \t\r\n:") {
		return invalid("hash_header %q is not a valid header name", c.HashHeader)
	}
	if c.Retries != nil && (*c.Retries < 0 || *c.Retries > 10) {
		return invalid("retries %d is out of range 0..10", *c.Retries)
	}
	if c.HashLoadFactor != 0 && (c.HashLoadFactor <= 1 || c.HashLoadFactor > 10) {
		return invalid("hash_load_factor %g is out of range (1, 10]", c.HashLoadFactor)
	}
	if c.TimeoutMS < 0 || c.TimeoutMS > 600_000 {
		return invalid("timeout_ms %d is out of range 0..600000", c.TimeoutMS)
	}
	for id, w := range c.Weights {
		if err := ValidateID(id); err != nil {
			return invalid("weights: key %q is not an instance id", truncate(id))
		}
		if w < 0 || w > MaxWeight {
			return invalid("weights[%q]: %d is out of range 0..%d", id, w, MaxWeight)
		}
	}
	return nil
}

// DecodeRouteConfig parses and validates a hail_config route value.
func DecodeRouteConfig(data []byte) (RouteConfig, error) {
	var c RouteConfig
	err := Decode("route config", data, &c)
	return c, err
}
