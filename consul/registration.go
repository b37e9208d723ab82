package consul

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hailsd/hail/agent"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/health"
)

// hailNamespace is hail's UUIDv5 namespace (PROTOCOL v1.3): the UUIDv5 of
// the RFC 9562 URL namespace and the name "hail".
var hailNamespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("hail"))

// InstanceID is the instance id of a service registered through Consul's
// API under id: id itself when it is a UUID, else UUIDv5(hail's
// namespace, "consul:"+id), the same on every agent.
func InstanceID(id string) string {
	if events.IsID(id) {
		return id
	}
	return uuid.NewSHA1(hailNamespace, []byte("consul:"+id)).String()
}

// Bounds of a registration: Consul's own limits on metadata, and one on
// the body.
const (
	MaxRegistrationBytes = 64 << 10
	maxMeta              = 64
	maxMetaKey           = 128
	maxMetaValue         = 512
	maxConsulID          = 128
	maxChecks            = 32
)

// registrationJSON is Consul's AgentServiceRegistration, the fields hail
// takes; the others are ignored as Consul's clients send them empty.
type registrationJSON struct {
	ID      string
	Name    string
	Address string
	Port    int
	Tags    []string
	Meta    map[string]string
	Weights *weights
	Check   *checkJSON
	Checks  []checkJSON
}

// checkJSON is Consul's AgentServiceCheck.
type checkJSON struct {
	CheckID                string
	Name                   string
	HTTP                   string
	Method                 string
	Header                 map[string][]string
	TLSSkipVerify          bool
	TCP                    string
	GRPC                   string
	GRPCUseTLS             bool
	Args                   []string
	ScriptArgs             []string
	TTL                    consulDuration
	Interval               consulDuration
	Timeout                consulDuration
	SuccessBeforePassing   int
	FailuresBeforeWarning  int
	FailuresBeforeCritical int
}

// consulDuration reads a duration as Consul's clients send it: a string
// like "10s", or a number of nanoseconds.
type consulDuration time.Duration

func (d *consulDuration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		if s == "" {
			*d = 0
			return nil
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", truncate(s), err)
		}
		*d = consulDuration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration %s is neither a string like 10s nor nanoseconds", truncate(string(b)))
	}
	*d = consulDuration(n)
	return nil
}

// errScripts is Consul's refusal of a script check through the API.
var errScripts = errors.New("Scripts are disabled on this agent")

// toService turns a registration into the agent's service config: the
// instance id derived from the Consul ID, kept in metadata as consul_id,
// each check named by its CheckID (or service:<ID>[:<n>] as Consul names
// them), so TTL reports and answers find it.
func toService(reg registrationJSON, scripts bool) (agent.ServiceConfig, error) {
	if reg.Name == "" {
		return agent.ServiceConfig{}, errors.New("Name is required")
	}
	if err := events.ValidateService(reg.Name); err != nil {
		return agent.ServiceConfig{}, fmt.Errorf("Name: %w", err)
	}
	id := reg.ID
	if id == "" {
		id = reg.Name
	}
	if len(id) > maxConsulID || strings.ContainsAny(id, "/ \t\n") {
		return agent.ServiceConfig{}, fmt.Errorf("ID %q: at most %d bytes, no slash or space", truncate(id), maxConsulID)
	}
	if len(reg.Meta) > maxMeta {
		return agent.ServiceConfig{}, fmt.Errorf("Meta: %d keys; at most %d", len(reg.Meta), maxMeta)
	}
	for k, v := range reg.Meta {
		if k == "" || len(k) > maxMetaKey || len(v) > maxMetaValue || k == ConsulIDKey {
			return agent.ServiceConfig{}, fmt.Errorf("Meta %q: keys 1..%d bytes (not %s), values at most %d", truncate(k), maxMetaKey, ConsulIDKey, maxMetaValue)
		}
	}
	meta := maps.Clone(reg.Meta)
	if meta == nil {
		meta = map[string]string{}
	}
	meta[ConsulIDKey] = id
	address := reg.Address
	if address == "" {
		address = "127.0.0.1" // Consul's: the agent's own address
	}
	svc := agent.ServiceConfig{
		Name: reg.Name, ID: InstanceID(id), Address: address, Port: reg.Port, Tags: reg.Tags, Metadata: meta,
	}
	if reg.Weights != nil && reg.Weights.Passing > 0 {
		// Consul's clients send 0 for "not set": weight 0 would drain.
		w := reg.Weights.Passing
		svc.Weight = &w
	}
	checks := reg.Checks
	if reg.Check != nil {
		checks = append([]checkJSON{*reg.Check}, checks...)
	}
	if len(checks) > maxChecks {
		return agent.ServiceConfig{}, fmt.Errorf("%d checks; at most %d", len(checks), maxChecks)
	}
	for i, c := range checks {
		name := c.CheckID
		switch {
		case name != "":
		case len(checks) == 1:
			name = "service:" + id
		default:
			name = fmt.Sprintf("service:%s:%d", id, i+1)
		}
		args := c.Args
		if len(args) == 0 {
			args = c.ScriptArgs
		}
		if len(args) > 0 && !scripts {
			return agent.ServiceConfig{}, errScripts
		}
		cc := agent.CheckConfig{
			Name: name, HTTP: c.HTTP, Method: c.Method, Header: c.Header, TLSSkipVerify: c.TLSSkipVerify, TCP: c.TCP,
			GRPCUseTLS: c.GRPCUseTLS, Args: args, TTL: time.Duration(c.TTL), Interval: time.Duration(c.Interval), Timeout: time.Duration(c.Timeout),
			Thresholds: health.Thresholds{SuccessBeforePassing: c.SuccessBeforePassing, FailuresBeforeWarning: c.FailuresBeforeWarning, FailuresBeforeCritical: c.FailuresBeforeCritical},
		}
		if c.GRPC != "" {
			// Consul's GRPC is host:port, or host:port/service.
			hostPort, service, _ := strings.Cut(c.GRPC, "/")
			if _, _, err := net.SplitHostPort(hostPort); err != nil {
				return agent.ServiceConfig{}, fmt.Errorf("Checks[%d].GRPC %q is not host:port[/service]", i, truncate(c.GRPC))
			}
			cc.GRPC, cc.GRPCService = hostPort, service
		}
		svc.Checks = append(svc.Checks, cc)
	}
	if err := agent.ValidateServices([]agent.ServiceConfig{svc}); err != nil {
		return agent.ServiceConfig{}, err
	}
	return svc, nil
}
