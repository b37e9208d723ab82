package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Status is an instance's health as PROTOCOL.md names it.
type Status string

// The statuses of PROTOCOL.md. Deregistered appears only in health events.
const (
	Passing      Status = "passing"
	Warning      Status = "warning"
	Critical     Status = "critical"
	Deregistered Status = "deregistered"
)

// Valid reports whether s is a status an instance record may hold.
func (s Status) Valid() bool { return s == Passing || s == Warning || s == Critical }

// DefaultWeight is an announce's weight when it states none.
const DefaultWeight = 100

// MaxWeight bounds Announce.Weight and RouteConfig.Weights.
const MaxWeight = 10000

// Endpoint is one request endpoint of an instance.
type Endpoint struct {
	Name string `json:"name" hail:"required"`
}

// Announce is what an instance publishes on P.announce.<service>.
type Announce struct {
	ID        string            `json:"id" hail:"required"`
	Service   string            `json:"service" hail:"required"`
	Version   string            `json:"version,omitempty"`
	Endpoints []Endpoint        `json:"endpoints" hail:"required"`
	Weight    int               `json:"weight"`
	AZ        string            `json:"az,omitempty"`
	Hostname  string            `json:"hostname,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	TS        time.Time         `json:"ts,omitzero"`
	// The v1.1 fields: where direct clients reach the instance, free
	// labels, the status to record at registration (an agent announces
	// what its first check round found) and the instance's local checks.
	Address string        `json:"address,omitempty" hail:"nonempty"`
	Port    Port          `json:"port,omitempty"`
	Tags    []string      `json:"tags,omitempty"`
	Status  Status        `json:"status,omitempty" hail:"nonempty"`
	Checks  []CheckResult `json:"checks,omitempty"`
	// Scoped (v1.2): heartbeat it on P.hb.<service>.<id> and reach it on
	// P.inst.<service>.<id>.<endpoint>, subjects a credential can be
	// confined to by service.
	Scoped bool `json:"scoped,omitempty"`
	// Conn (v1.4) is the connection the instance speaks on, announced
	// again after every reconnect: its owner marks it critical the
	// moment the server says that connection closed.
	Conn *Conn `json:"conn,omitempty"`
}

// The kinds of CheckResult.
const (
	CheckHTTP   = "http"
	CheckTCP    = "tcp"
	CheckGRPC   = "grpc"
	CheckScript = "script"
	CheckTTL    = "ttl"
)

// MaxCheckOutput bounds CheckResult.Output: 4 KiB, cut by whoever writes it
// (CutOutput). Readers count characters, as the JSON Schema does.
const MaxCheckOutput = 4096

// CheckResult is one local check of an instance, as last seen.
type CheckResult struct {
	Name   string    `json:"name" hail:"required"`
	Kind   string    `json:"kind" hail:"required"`
	Status Status    `json:"status" hail:"required"`
	Output string    `json:"output,omitempty"`
	Since  time.Time `json:"since,omitzero"`
}

// Validate checks a result's name, kind, status and output.
func (c *CheckResult) Validate() error {
	if c.Name == "" || len(c.Name) > 128 || !utf8.ValidString(c.Name) {
		return invalid("check name %q must be 1..128 bytes of UTF-8", truncate(c.Name))
	}
	switch c.Kind {
	case CheckHTTP, CheckTCP, CheckGRPC, CheckScript, CheckTTL:
	default:
		return invalid("check %q: kind %q is not http, tcp, grpc, script or ttl", c.Name, truncate(c.Kind))
	}
	if !c.Status.Valid() {
		return invalid("check %q: status %q is not passing, warning or critical", c.Name, truncate(string(c.Status)))
	}
	if n := utf8.RuneCountInString(c.Output); n > MaxCheckOutput {
		return invalid("check %q: output of %d characters exceeds %d", c.Name, n, MaxCheckOutput)
	}
	return nil
}

// CutOutput cuts s to at most max bytes on a UTF-8 character boundary.
func CutOutput(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// WorstStatus is the worst of the checks' statuses (critical > warning >
// passing); passing when there are none.
func WorstStatus(checks []CheckResult) Status {
	worst := Passing
	for _, c := range checks {
		switch {
		case c.Status == Critical:
			return Critical
		case c.Status == Warning:
			worst = Warning
		}
	}
	return worst
}

// SameChecks reports whether a and b hold the same checks with the same
// statuses, in any order, whatever their output or since: what decides
// whether a record is written.
func SameChecks(a, b []CheckResult) bool {
	if len(a) != len(b) {
		return false
	}
	status := make(map[string]Status, len(a))
	for _, c := range a {
		status[c.Name] = c.Status
	}
	for _, c := range b {
		if s, ok := status[c.Name]; !ok || s != c.Status {
			return false
		}
	}
	return true
}

func validateChecks(checks []CheckResult) error {
	seen := make(map[string]bool, len(checks))
	for i := range checks {
		if err := checks[i].Validate(); err != nil {
			return fmt.Errorf("checks[%d]: %w", i, err)
		}
		if seen[checks[i].Name] {
			return invalid("checks[%d]: check %q is listed twice", i, checks[i].Name)
		}
		seen[checks[i].Name] = true
	}
	return nil
}

// Port is an instance's port, 1..65535; absent (0) means none. A JSON
// port of 0 is refused, as the schema refuses it, not taken as absent.
type Port int

// UnmarshalJSON refuses a port out of 1..65535.
func (p *Port) UnmarshalJSON(b []byte) error {
	var n int
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	if n < 1 || n > 65535 {
		return invalid("port %d is out of range 1..65535", n)
	}
	*p = Port(n)
	return nil
}

// MaxTags bounds Announce.Tags.
const MaxTags = 32

// ValidateTag checks one tag: 1..64 of [A-Za-z0-9_.:-].
func ValidateTag(t string) error {
	if t == "" || len(t) > 64 {
		return invalid("tag %q must be 1..64 characters", truncate(t))
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == ':' || c == '-') {
			return invalid("tag %q: %s is not allowed (A-Z a-z 0-9 _ . : -)", truncate(t), describe(c))
		}
	}
	return nil
}

// ValidateAddress checks an instance's address: an IP, or a host name of
// dot-separated labels of letters, digits and hyphens, at most 253 bytes.
func ValidateAddress(a string) error {
	if a == "" || len(a) > 253 {
		return invalid("address %q must be 1..253 bytes", truncate(a))
	}
	if net.ParseIP(a) != nil {
		return nil
	}
	for _, label := range strings.Split(a, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return invalid("address %q is neither an IP nor a host name (labels of 1..63 letters, digits and inner hyphens)", truncate(a))
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return invalid("address %q: %s cannot appear in a host name", truncate(a), describe(c))
			}
		}
	}
	return nil
}

// Validate checks the fields PROTOCOL.md constrains.
func (a *Announce) Validate() error {
	if err := requireID(a.ID); err != nil {
		return err
	}
	if err := requireService(a.Service); err != nil {
		return err
	}
	if a.Endpoints == nil {
		return invalid("endpoints is required")
	}
	if len(a.Endpoints) == 0 && a.Address == "" {
		return invalid("endpoints is empty; an instance serves at least one endpoint, or has an address to be reached at")
	}
	seen := make(map[string]bool, len(a.Endpoints))
	for i, ep := range a.Endpoints {
		if err := ValidateEndpoint(ep.Name); err != nil {
			return fmt.Errorf("endpoints[%d]: %w", i, err)
		}
		if seen[ep.Name] {
			return invalid("endpoints[%d]: endpoint %q is listed twice", i, ep.Name)
		}
		seen[ep.Name] = true
	}
	if a.Weight < 0 || a.Weight > MaxWeight {
		return invalid("weight %d is out of range 0..%d", a.Weight, MaxWeight)
	}
	if a.Address != "" {
		if err := ValidateAddress(a.Address); err != nil {
			return err
		}
	}
	if a.Port < 0 || a.Port > 65535 {
		return invalid("port %d is out of range 1..65535", a.Port)
	}
	if len(a.Tags) > MaxTags {
		return invalid("%d tags; at most %d", len(a.Tags), MaxTags)
	}
	for i, t := range a.Tags {
		if err := ValidateTag(t); err != nil {
			return fmt.Errorf("tags[%d]: %w", i, err)
		}
	}
	if a.Status != "" && !a.Status.Valid() {
		return invalid("status %q is not passing, warning or critical", truncate(string(a.Status)))
	}
	if a.Conn != nil {
		if err := a.Conn.Validate(); err != nil {
			return err
		}
	}
	return validateChecks(a.Checks)
}

// EndpointNames returns the names of a's endpoints.
func (a *Announce) EndpointNames() []string {
	names := make([]string, len(a.Endpoints))
	for i, ep := range a.Endpoints {
		names[i] = ep.Name
	}
	return names
}

// Deregister is what an instance publishes on P.deregister.<service>.
type Deregister struct {
	ID      string `json:"id" hail:"required"`
	Service string `json:"service" hail:"required"`
	Reason  string `json:"reason,omitempty"`
}

// Validate checks the fields PROTOCOL.md constrains.
func (d *Deregister) Validate() error {
	if err := requireID(d.ID); err != nil {
		return err
	}
	return requireService(d.Service)
}

// Heartbeat is what a discovery node sends on P.hb.<id>.
type Heartbeat struct {
	Node string    `json:"node"`
	Seq  uint64    `json:"seq"`
	TS   time.Time `json:"ts,omitzero"`
	// Queued: the instance's announce waits in the node's admission
	// queue; it is heard, not registered yet. Answered as any heartbeat
	// (the answer is not read).
	Queued bool `json:"queued,omitempty"`
}

// HeartbeatReply is an instance's answer to a Heartbeat.
type HeartbeatReply struct {
	ID       string `json:"id"`
	Status   Status `json:"status"`
	Inflight int    `json:"inflight"`
	Capacity int    `json:"capacity,omitempty"`
	// Checks are the instance's local checks (v1.1); Status is the worst.
	Checks []CheckResult `json:"checks,omitempty"`
}

// Validate checks a reply's status; an empty status counts as passing, since
// the reply itself is the sign of life.
func (r *HeartbeatReply) Validate() error {
	if r.Status != "" && !r.Status.Valid() {
		return invalid("status %q is not passing, warning or critical", r.Status)
	}
	if r.Inflight < 0 || r.Capacity < 0 {
		return invalid("inflight and capacity must not be negative")
	}
	return validateChecks(r.Checks)
}

// InstanceRecord is the value of hail_instances <service>.<id>.
type InstanceRecord struct {
	Announce
	Status       Status    `json:"status" hail:"required"`
	Node         string    `json:"node" hail:"required"`
	RegisteredAt time.Time `json:"registered_at" hail:"required"`
	UpdatedAt    time.Time `json:"updated_at" hail:"required"`
	// Region the instance is registered in (PROTOCOL v1.5); absent in
	// records written before v1.5.
	Region string `json:"region,omitempty"`
	// Stale is set only in answers of another region's instances, when
	// that region's source has not delivered for remote_stale.
	Stale bool `json:"stale,omitempty"`
}

// Key is the record's key in hail_instances.
func (r *InstanceRecord) Key() string { return InstanceKey(r.Service, r.ID) }

// Validate checks a record read back from KV, which anyone may have written.
func (r *InstanceRecord) Validate() error {
	if err := r.Announce.Validate(); err != nil {
		return err
	}
	if !r.Status.Valid() {
		return invalid("status %q is not passing, warning or critical", r.Status)
	}
	if err := requireID(r.Node); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	return validateRegionField(r.Region)
}

// InstanceKey is the hail_instances key of an instance.
func InstanceKey(service, id string) string { return service + "." + id }

// HealthEvent is published on P.health.<service>.<id> on every transition.
type HealthEvent struct {
	ID       string    `json:"id" hail:"required"`
	Service  string    `json:"service" hail:"required"`
	Status   Status    `json:"status" hail:"required"`
	Previous Status    `json:"previous" hail:"required"`
	Reason   string    `json:"reason,omitempty"`
	Node     string    `json:"node" hail:"required"`
	TS       time.Time `json:"ts" hail:"required"`
	// Region of the node that judged (PROTOCOL v1.5).
	Region string `json:"region,omitempty"`
}

// Validate checks an event heard on the bus, which anyone allowed to
// publish there may have sent.
func (e *HealthEvent) Validate() error {
	if err := requireID(e.ID); err != nil {
		return err
	}
	if err := requireService(e.Service); err != nil {
		return err
	}
	if !e.Status.Valid() && e.Status != Deregistered {
		return invalid("status %q is not passing, warning, critical or deregistered", truncate(string(e.Status)))
	}
	if e.Previous != "" && !e.Previous.Valid() {
		return invalid("previous %q is not empty, passing, warning or critical", truncate(string(e.Previous)))
	}
	if err := requireID(e.Node); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	return validateRegionField(e.Region)
}

// NodeEvent is what a discovery node publishes on P.node.<node-id> about
// itself; this repository's addition.
type NodeEvent struct {
	Node   string    `json:"node" hail:"required"`
	State  string    `json:"state" hail:"required"` // NodeSelfPreservation or NodeNormal
	Reason string    `json:"reason,omitempty"`
	TS     time.Time `json:"ts" hail:"required"`
}

// Validate checks a node event heard on the bus.
func (e *NodeEvent) Validate() error {
	if err := requireID(e.Node); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if e.State != NodeSelfPreservation && e.State != NodeNormal {
		return invalid("state %q is not %s or %s", truncate(e.State), NodeSelfPreservation, NodeNormal)
	}
	return nil
}

// NodeEvent states.
const (
	NodeSelfPreservation = "self_preservation"
	NodeNormal           = "normal"
)

// RTTReport is one node's answer on P.discovery.rtt: the heartbeat
// round-trip time, in milliseconds, of each instance it owns that answered
// its last round, by instance id.
type RTTReport struct {
	Node  string             `json:"node"`
	RTTMS map[string]float64 `json:"rtt_ms"`
}

// NodeRecord is the value of hail_nodes <node-id>.
type NodeRecord struct {
	ID        string    `json:"id" hail:"required"`
	AZ        string    `json:"az,omitempty"`
	Hostname  string    `json:"hostname,omitempty"`
	StartedAt time.Time `json:"started_at" hail:"required"`
	TS        time.Time `json:"ts" hail:"required"`
}

// Validate checks a hail_nodes value, which a writer of the bucket may
// have forged.
func (r *NodeRecord) Validate() error { return requireID(r.ID) }

// Ack answers an announce or deregister sent as a request.
type Ack struct {
	OK   bool   `json:"ok"`
	ID   string `json:"id,omitempty"`
	Node string `json:"node,omitempty"`
}

// ErrorBody is the body of an error reply; the same text and code travel in
// the Nats-Service-Error headers.
type ErrorBody struct {
	OK    bool   `json:"ok"`
	Error string `json:"error"`
	Code  int    `json:"code"`
	// RetryAfterMS, on a 503 to an announce (this repository's growth of
	// v1), is how long the sender should wait before announcing again:
	// the node's estimate of when its queue of announces has room. Absent
	// (0): back off as usual.
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
}

// ServiceSummary is one row of the P.discovery.services answer.
type ServiceSummary struct {
	Service   string `json:"service"`
	Instances int    `json:"instances"`
	Passing   int    `json:"passing"`
	Warning   int    `json:"warning,omitempty"`
	Critical  int    `json:"critical,omitempty"`
	// Region and Stale are set in answers that take a region (PROTOCOL
	// v1.5): one row per region and service.
	Region string `json:"region,omitempty"`
	Stale  bool   `json:"stale,omitempty"`
}

// InstancesQuery is the request of P.discovery.instances.
type InstancesQuery struct {
	Service string `json:"service,omitempty"`
	Status  Status `json:"status,omitempty"`
	// The filters below are this repository's additions. ServicePrefix
	// matches services whose name starts with it ("com.example" matches
	// "com.example.login"); Version and AZ match exactly.
	ServicePrefix string `json:"service_prefix,omitempty"`
	Version       string `json:"version,omitempty"`
	AZ            string `json:"az,omitempty"`
	// Tag (v1.1) matches instances that have the tag.
	Tag string `json:"tag,omitempty"`
	// Limit and After page the answer (this repository's addition, for
	// registries whose whole list would not fit one message): at most
	// Limit records (0: all), those whose key sorts after After. The next
	// page's After is the last key of this one, <service>.<id>; anything
	// else is refused.
	Limit int    `json:"limit,omitempty"`
	After string `json:"after,omitempty"`
	// Region (PROTOCOL v1.5) asks for another region's instances, or
	// every known region's with "*"; absent: the own region's.
	Region string `json:"region,omitempty"`
}

// MaxPageLimit bounds InstancesQuery.Limit.
const MaxPageLimit = 100000

// Match reports whether rec passes every filter of q.
func (q *InstancesQuery) Match(rec InstanceRecord) bool {
	return (q.Service == "" || rec.Service == q.Service) &&
		(q.Status == "" || rec.Status == q.Status) &&
		strings.HasPrefix(rec.Service, q.ServicePrefix) &&
		(q.Version == "" || rec.Version == q.Version) &&
		(q.AZ == "" || rec.AZ == q.AZ) &&
		(q.Tag == "" || slices.Contains(rec.Tags, q.Tag))
}

// Validate checks the optional filters.
func (q *InstancesQuery) Validate() error {
	if q.Service != "" {
		if err := ValidateService(q.Service); err != nil {
			return fmt.Errorf("service: %w", err)
		}
	}
	if len(q.ServicePrefix) > MaxServiceLen {
		return invalid("service_prefix is %d bytes, longer than a service name may be (%d)", len(q.ServicePrefix), MaxServiceLen)
	}
	for i := 0; i < len(q.ServicePrefix); i++ {
		if c := q.ServicePrefix[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return invalid("service_prefix %q: %s cannot appear in a service name", truncate(q.ServicePrefix), describe(c))
		}
	}
	if q.Status != "" && !q.Status.Valid() {
		return invalid("status %q is not passing, warning or critical", q.Status)
	}
	if q.Tag != "" {
		if err := ValidateTag(q.Tag); err != nil {
			return err
		}
	}
	if q.Limit < 0 || q.Limit > MaxPageLimit {
		return invalid("limit %d is out of range 0..%d", q.Limit, MaxPageLimit)
	}
	if q.After != "" {
		if err := validateAfter(q.After); err != nil {
			return err
		}
	}
	return ValidateRegionQuery(q.Region, q.Limit > 0 || q.After != "")
}

// validateAfter refuses an after that is not a key: a bare id or a service
// name sorts before or after every key of a service, so the answer would
// silently start from the top or skip a service instead of going on from
// the last page.
func validateAfter(after string) error {
	if n := utf8.RuneCountInString(after); n > MaxServiceLen+1+36 {
		return invalid("after is %d characters; it is a key, <service>.<id> (the last record's service and id of the page before)", n)
	}
	i := strings.LastIndexByte(after, '.')
	if i < 0 {
		return invalid("after %q is not a key <service>.<id>: the next page's after is the last record's service and id joined by a dot, e.g. echo.0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a6b", after)
	}
	if err := ValidateService(after[:i]); err != nil {
		return fmt.Errorf("after %q is not a key <service>.<id>: %w", after, err)
	}
	if err := ValidateID(after[i+1:]); err != nil {
		return fmt.Errorf("after %q is not a key <service>.<id>: %w", after, err)
	}
	return nil
}

func requireID(id string) error {
	if id == "" {
		return invalid("id is required")
	}
	return ValidateID(id)
}

func requireService(s string) error {
	if s == "" {
		return invalid("service is required")
	}
	return ValidateService(s)
}

// DecodeAnnounce parses and validates an Announce; a missing weight is
// DefaultWeight.
func DecodeAnnounce(data []byte) (Announce, error) {
	a := Announce{Weight: DefaultWeight}
	err := Decode("announce", data, &a)
	return a, err
}

// DecodeDeregister parses and validates a Deregister.
func DecodeDeregister(data []byte) (Deregister, error) {
	var d Deregister
	err := Decode("deregister", data, &d)
	return d, err
}

// DecodeInstanceRecord parses and validates a hail_instances value.
func DecodeInstanceRecord(data []byte) (InstanceRecord, error) {
	r := InstanceRecord{Announce: Announce{Weight: DefaultWeight}}
	err := Decode("instance record", data, &r)
	return r, err
}

// DecodeHeartbeatReply parses and validates an instance's heartbeat reply.
func DecodeHeartbeatReply(data []byte) (HeartbeatReply, error) {
	var r HeartbeatReply
	err := Decode("heartbeat reply", data, &r)
	return r, err
}

// DecodeHealthEvent parses and validates a health event.
func DecodeHealthEvent(data []byte) (HealthEvent, error) {
	var e HealthEvent
	err := Decode("health event", data, &e)
	return e, err
}

// DecodeNodeEvent parses and validates a discovery node's event.
func DecodeNodeEvent(data []byte) (NodeEvent, error) {
	var e NodeEvent
	err := Decode("node event", data, &e)
	return e, err
}

// DecodeNodeRecord parses and validates a hail_nodes value.
func DecodeNodeRecord(data []byte) (NodeRecord, error) {
	var r NodeRecord
	err := Decode("node record", data, &r)
	return r, err
}

// DecodeInstancesQuery parses a P.discovery.instances request; an empty body
// asks for everything.
func DecodeInstancesQuery(data []byte) (InstancesQuery, error) {
	var q InstancesQuery
	if len(bytes.TrimSpace(data)) == 0 {
		return q, nil
	}
	err := Decode("instances query", data, &q)
	return q, err
}

// ServicesQuery is the request of P.discovery.services: empty, or a
// region (PROTOCOL v1.5).
type ServicesQuery struct {
	Region string `json:"region,omitempty"`
}

// Validate checks the region.
func (q *ServicesQuery) Validate() error { return ValidateRegionQuery(q.Region, false) }

// DecodeServicesQuery parses a services query; an empty body is the own
// region's.
func DecodeServicesQuery(data []byte) (ServicesQuery, error) {
	var q ServicesQuery
	if len(bytes.TrimSpace(data)) == 0 {
		return q, nil
	}
	err := Decode("services query", data, &q)
	return q, err
}

// Discover is the message of P.discover: every instance announces again,
// at a random point within SpreadMS (this repository's addition, so that a
// large region's announces do not all land at once; absent: the
// instance's own default).
type Discover struct {
	SpreadMS int64 `json:"spread_ms,omitempty"`
}

// MaxDiscoverSpread bounds the spread an instance takes from a discover.
const MaxDiscoverSpread = 10 * time.Minute

// DiscoverSpread is the window a discover message asks announces to be
// spread over, or fallback when it names none or something unusable.
func DiscoverSpread(data []byte, fallback time.Duration) time.Duration {
	var d Discover
	if json.Unmarshal(data, &d) != nil || d.SpreadMS <= 0 {
		return fallback
	}
	return min(time.Duration(d.SpreadMS)*time.Millisecond, MaxDiscoverSpread)
}

// DiscoverSpreadFor is the spread a discovery node asks for in a region of
// n instances: half a millisecond each (about 2,000 announces a second
// across the region), at least a second.
func DiscoverSpreadFor(n int) time.Duration {
	return max(time.Second, time.Duration(n)*time.Millisecond/2)
}
