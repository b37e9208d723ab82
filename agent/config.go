package agent

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/hailsd/hail/config"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/health"
)

// ServiceConfig is one entry of the agent's `services:` list (PROTOCOL
// v1.1 "The agent"): a service it registers, checks and answers for.
type ServiceConfig struct {
	// Name is the service's name; unique within one agent's config.
	Name string `koanf:"name"`
	// ID is a fixed instance id (a UUID); empty: a new one per agent
	// process.
	ID       string            `koanf:"id"`
	Address  string            `koanf:"address"`
	Port     int               `koanf:"port"`
	Version  string            `koanf:"version"`
	Weight   *int              `koanf:"weight"` // default 100
	AZ       string            `koanf:"az"`
	Tags     []string          `koanf:"tags"`
	Metadata map[string]string `koanf:"metadata"`
	// Scoped announces "scoped": true (v1.2): heartbeats and bridged
	// requests on subjects under the service's name, which a
	// svc-<service> credential can be confined to.
	Scoped bool `koanf:"scoped"`
	// Capacity bounds the bridged requests in flight; reported in
	// heartbeat replies so least_conn and p2c_ewma see the load. Default
	// 64.
	Capacity int           `koanf:"capacity"`
	Bridge   BridgeConfig  `koanf:"bridge"`
	Checks   []CheckConfig `koanf:"checks"`
}

// BridgeConfig is where NATS requests for the instance go over HTTP
// (PROTOCOL v1.1 "The bridge"): each endpoint is served on
// P.inst.<id>.<name> and P.svc.<service>.<name> and announced.
type BridgeConfig struct {
	BaseURL   string           `koanf:"base_url"`
	Timeout   time.Duration    `koanf:"timeout"`
	Endpoints []BridgeEndpoint `koanf:"endpoints"`
}

// BridgeEndpoint is one bridged endpoint.
type BridgeEndpoint struct {
	Name   string `koanf:"name"`
	Method string `koanf:"method"`
	Path   string `koanf:"path"`
}

// CheckConfig is one check of a service: exactly one of HTTP, TCP, GRPC,
// Args and TTL says its kind.
type CheckConfig struct {
	Name          string              `koanf:"name"`
	HTTP          string              `koanf:"http"`
	Method        string              `koanf:"method"`
	Header        map[string][]string `koanf:"header"`
	TLSSkipVerify bool                `koanf:"tls_skip_verify"`
	TCP           string              `koanf:"tcp"`
	GRPC          string              `koanf:"grpc"`
	GRPCService   string              `koanf:"grpc_service"`
	GRPCUseTLS    bool                `koanf:"grpc_use_tls"`
	Args          []string            `koanf:"args"`
	TTL           time.Duration       `koanf:"ttl"`
	// Interval is required for every kind but ttl.
	Interval time.Duration `koanf:"interval"`
	// Timeout defaults to 10s and is capped at Interval.
	Timeout           time.Duration `koanf:"timeout"`
	health.Thresholds `koanf:",squash"`
}

// Kind is the check's kind as a CheckResult names it.
func (c CheckConfig) Kind() string {
	switch {
	case c.HTTP != "":
		return events.CheckHTTP
	case c.TCP != "":
		return events.CheckTCP
	case c.GRPC != "":
		return events.CheckGRPC
	case len(c.Args) > 0:
		return events.CheckScript
	case c.TTL > 0:
		return events.CheckTTL
	}
	return ""
}

// timeout is the probe's bound: Timeout, default 10s, at most Interval.
func (c CheckConfig) timeout() time.Duration {
	t := c.Timeout
	if t <= 0 {
		t = health.DefaultTimeout
	}
	return min(t, c.Interval)
}

// capacity is the bound on bridged requests in flight.
func (s ServiceConfig) capacity() int {
	if s.Capacity <= 0 {
		return DefaultCapacity
	}
	return s.Capacity
}

// weight is the announced weight.
func (s ServiceConfig) weight() int {
	if s.Weight == nil {
		return events.DefaultWeight
	}
	return *s.Weight
}

// ValidateServices checks the list and names the key of each fault, like
// `services[1].checks[0].interval`.
func ValidateServices(svcs []ServiceConfig) error {
	var errs []error
	names := map[string]bool{}
	ids := map[string]bool{}
	for i, s := range svcs {
		key := fmt.Sprintf("services[%d]", i)
		add := func(field, format string, args ...any) {
			errs = append(errs, config.FieldError(key+"."+field, format, args...))
		}
		if err := events.ValidateService(s.Name); err != nil {
			add("name", "%v", err)
		} else if names[s.Name] {
			add("name", "service %q is listed twice; names are unique within one agent", s.Name)
		}
		names[s.Name] = true
		if s.ID != "" {
			if err := events.ValidateID(s.ID); err != nil {
				add("id", "%v", err)
			} else if ids[s.ID] {
				add("id", "%s is used twice", s.ID)
			}
			ids[s.ID] = true
		}
		if s.Address != "" {
			if err := events.ValidateAddress(s.Address); err != nil {
				add("address", "%v", err)
			}
		} else {
			add("address", "is required: the agent registers a service by its address")
		}
		if s.Capacity < 0 {
			add("capacity", "%d is negative", s.Capacity)
		}
		if s.Port < 0 || s.Port > 65535 {
			add("port", "%d is out of range 1..65535", s.Port)
		}
		if w := s.weight(); w < 0 || w > events.MaxWeight {
			add("weight", "%d is out of range 0..%d", w, events.MaxWeight)
		}
		if len(s.Tags) > events.MaxTags {
			add("tags", "%d tags; at most %d", len(s.Tags), events.MaxTags)
		}
		for j, t := range s.Tags {
			if err := events.ValidateTag(t); err != nil {
				add(fmt.Sprintf("tags[%d]", j), "%v", err)
			}
		}
		if err := validateBridge(s.Bridge); err != nil {
			add("bridge", "%v", err)
		}
		checks := map[string]bool{}
		for j, c := range s.Checks {
			ckey := fmt.Sprintf("checks[%d]", j)
			if c.Name == "" || len(c.Name) > 128 {
				add(ckey+".name", "must be 1..128 bytes")
			} else if checks[c.Name] {
				add(ckey+".name", "check %q is listed twice in this service", c.Name)
			}
			checks[c.Name] = true
			if err := validateCheck(c); err != nil {
				add(ckey, "%v", err)
			}
		}
	}
	return errors.Join(errs...)
}

func validateCheck(c CheckConfig) error {
	kinds := 0
	for _, set := range []bool{c.HTTP != "", c.TCP != "", c.GRPC != "", len(c.Args) > 0, c.TTL != 0} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		return fmt.Errorf("has %d of http, tcp, grpc, args and ttl; exactly one says its kind", kinds)
	}
	if c.SuccessBeforePassing < 0 || c.FailuresBeforeWarning < 0 || c.FailuresBeforeCritical < 0 {
		return errors.New("thresholds must not be negative")
	}
	if c.Kind() == events.CheckTTL {
		if c.TTL <= 0 {
			return fmt.Errorf("ttl %v must be positive", c.TTL)
		}
		return nil
	}
	if c.Interval <= 0 {
		return errors.New("interval is required (and positive) for http, tcp, grpc and args checks")
	}
	if c.Timeout < 0 {
		return fmt.Errorf("timeout %v is negative", c.Timeout)
	}
	switch c.Kind() {
	case events.CheckHTTP:
		u, err := url.Parse(c.HTTP)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("http %q is not an http:// or https:// URL", health.Redact(c.HTTP))
		}
		if c.Method != "" && !validMethod(c.Method) {
			return fmt.Errorf("method %q is not an HTTP method", c.Method)
		}
		for k := range c.Header {
			if !validMethod(k) { // a header name is a token too
				return fmt.Errorf("header %q is not a header name", k)
			}
		}
	case events.CheckTCP:
		if _, _, err := net.SplitHostPort(c.TCP); err != nil {
			return fmt.Errorf("tcp %q is not host:port", c.TCP)
		}
	case events.CheckGRPC:
		if _, _, err := net.SplitHostPort(c.GRPC); err != nil {
			return fmt.Errorf("grpc %q is not host:port", c.GRPC)
		}
	}
	return nil
}

func validateBridge(b BridgeConfig) error {
	if b.BaseURL != "" {
		if u, err := url.Parse(b.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("base_url %q is not an http:// or https:// URL", health.Redact(b.BaseURL))
		}
	}
	if b.Timeout < 0 {
		return fmt.Errorf("timeout %v is negative", b.Timeout)
	}
	for i, e := range b.Endpoints {
		if err := events.ValidateEndpoint(e.Name); err != nil {
			return fmt.Errorf("endpoints[%d]: %w", i, err)
		}
		if e.Method != "" && !validMethod(e.Method) {
			return fmt.Errorf("endpoints[%d]: method %q is not an HTTP method", i, e.Method)
		}
		if e.Path != "*" && !strings.HasPrefix(e.Path, "/") {
			return fmt.Errorf("endpoints[%d]: path %q must begin with / or be *", i, e.Path)
		}
	}
	return nil
}

// validMethod reports whether s is an HTTP token (a method or header name).
func validMethod(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// CheckKeys refuses keys the service list does not know (koanf ignores
// them inside list items, so a typo like `intreval` would pass silently):
// raw is the `services` value as the YAML parser read it.
func CheckKeys(raw any) error {
	return checkKeys("services", raw, reflect.TypeOf([]ServiceConfig{}))
}

func checkKeys(path string, raw any, t reflect.Type) error {
	switch t.Kind() {
	case reflect.Slice:
		items, ok := raw.([]any)
		if !ok {
			if raw == nil {
				return nil
			}
			if t.Elem().Kind() == reflect.Struct {
				return config.FieldError(path, "must be a list")
			}
			return nil
		}
		var errs []error
		for i, item := range items {
			errs = append(errs, checkKeys(fmt.Sprintf("%s[%d]", path, i), item, t.Elem()))
		}
		return errors.Join(errs...)
	case reflect.Pointer:
		return checkKeys(path, raw, t.Elem())
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			if raw == nil {
				return nil
			}
			return config.FieldError(path, "must be a map of keys")
		}
		fields := map[string]reflect.Type{}
		collectFields(t, fields)
		var errs []error
		for _, k := range slices.Sorted(maps.Keys(m)) {
			ft, ok := fields[k]
			if !ok {
				errs = append(errs, config.FieldError(path+"."+k, "is not a key of %s", path))
				continue
			}
			errs = append(errs, checkKeys(path+"."+k, m[k], ft))
		}
		return errors.Join(errs...)
	}
	return nil
}

func collectFields(t reflect.Type, into map[string]reflect.Type) {
	for f := range t.Fields() {
		tag, opts, _ := strings.Cut(f.Tag.Get("koanf"), ",")
		if strings.Contains(opts, "squash") {
			collectFields(f.Type, into)
			continue
		}
		if tag != "" && tag != "-" {
			into[tag] = f.Type
		}
	}
}
