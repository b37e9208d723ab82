package consul

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/hailsd/hail/agent"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/roles"
)

// Agent is what registration through Consul's API needs of hail's agent.
type Agent interface {
	// Apply makes svcs the registered services.
	Apply(svcs []agent.ServiceConfig) error
	// Report takes a TTL check's report (pass, warn, fail).
	Report(service, check, report, output string) (events.CheckResult, error)
	// Checks are every service's check results, by service name.
	Checks() map[string][]events.CheckResult
	// ID is a registered service's instance id.
	ID(service string) (string, bool)
}

// RegistrarConfig configures a Registrar.
type RegistrarConfig struct {
	// Dir (data_dir) keeps the services registered through the API, so a
	// restarted agent registers them again with the same ids.
	Dir string
	// Scripts allows checks with Args (api_script_checks).
	Scripts bool
	// Tokens, when set, guard the API: writes need a write token.
	Tokens *roles.Tokens
	Logger *slog.Logger
}

// servicesFile is where Dir keeps the registrations.
const servicesFile = "consul-services.json"

// Registrar is Consul's agent registration API over hail's agent: the
// services of the agent's config file and those registered through the
// API, applied together.
type Registrar struct {
	cfg RegistrarConfig
	a   Agent
	log *slog.Logger

	mu     sync.Mutex
	config []agent.ServiceConfig
	api    []apiService // in registration order
}

// apiService is one registration: as received (kept in Dir) and as the
// agent runs it.
type apiService struct {
	ID  string          // Consul's ID
	Raw json.RawMessage // the registration as received
	svc agent.ServiceConfig
}

// NewRegistrar reads the registrations kept in cfg.Dir; Services then
// lists them with the config's.
func NewRegistrar(a Agent, cfg RegistrarConfig) (*Registrar, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Registrar{cfg: cfg, a: a, log: cfg.Logger.With("component", "consul_registrar")}
	data, err := os.ReadFile(filepath.Join(cfg.Dir, servicesFile))
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(data, &raws); err != nil {
		return nil, fmt.Errorf("data_dir %s: %w", filepath.Join(cfg.Dir, servicesFile), err)
	}
	for _, raw := range raws {
		var reg registrationJSON
		if err := json.Unmarshal(raw, &reg); err != nil {
			r.log.Warn("dropping a kept registration that does not parse", "err", err)
			continue
		}
		svc, err := toService(reg, cfg.Scripts)
		if err != nil {
			r.log.Warn("dropping a kept registration", "service", reg.Name, "err", err)
			continue
		}
		r.api = append(r.api, apiService{ID: svc.Metadata[ConsulIDKey], Raw: raw, svc: svc})
	}
	return r, nil
}

// Services sets the config file's services and returns them with the API's:
// what the agent runs. An API service whose name the config now has is
// left out (the config wins) and said so.
func (r *Registrar) Services(config []agent.ServiceConfig) []agent.ServiceConfig {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.config = config
	for _, s := range r.api {
		if slices.ContainsFunc(config, func(c agent.ServiceConfig) bool { return c.Name == s.svc.Name }) {
			r.log.Warn("a service registered through the API has the name of one in the config file; the config's runs", "service", s.svc.Name)
		}
	}
	return r.all()
}

// SetConfig applies the config file's services, with the API's.
func (r *Registrar) SetConfig(config []agent.ServiceConfig) error {
	return r.a.Apply(r.Services(config))
}

func (r *Registrar) all() []agent.ServiceConfig {
	out := slices.Clone(r.config)
	for _, s := range r.api {
		if slices.ContainsFunc(r.config, func(c agent.ServiceConfig) bool { return c.Name == s.svc.Name }) {
			continue // the config's runs (Services said so)
		}
		out = append(out, s.svc)
	}
	return out
}

// persist writes the registrations to Dir, atomically.
func (r *Registrar) persist() error {
	raws := make([]json.RawMessage, len(r.api))
	for i, s := range r.api {
		raws[i] = s.Raw
	}
	data, err := json.Marshal(raws)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(r.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	tmp, err := os.CreateTemp(r.cfg.Dir, servicesFile+".*")
	if err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("data_dir: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(r.cfg.Dir, servicesFile)); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	return nil
}

// statusError is an answer with its HTTP status.
type statusError struct {
	code int
	err  error
}

func (e statusError) Error() string { return e.err.Error() }

func fail(code int, format string, args ...any) error {
	return statusError{code, fmt.Errorf(format, args...)}
}

// register takes one registration (Consul's semantics: the same ID again
// replaces it).
func (r *Registrar) register(raw []byte) error {
	var reg registrationJSON
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&reg); err != nil {
		return fail(http.StatusBadRequest, "Request decode failed: %v", err)
	}
	svc, err := toService(reg, r.cfg.Scripts)
	if errors.Is(err, errScripts) {
		return fail(http.StatusForbidden, "%v", err)
	}
	if err != nil {
		return fail(http.StatusBadRequest, "Invalid service: %v", err)
	}
	id := svc.Metadata[ConsulIDKey]
	r.mu.Lock()
	defer r.mu.Unlock()
	if slices.ContainsFunc(r.config, func(c agent.ServiceConfig) bool { return c.Name == svc.Name || c.ID == svc.ID }) {
		return fail(http.StatusConflict, "service %q is in the agent's config file: a service is registered one way", svc.Name)
	}
	next := slices.Clone(r.api)
	i := slices.IndexFunc(next, func(s apiService) bool { return s.ID == id })
	for _, s := range next {
		switch {
		case s.ID == id && s.svc.Name != svc.Name:
			return fail(http.StatusConflict, "ID %q is registered for service %q", truncate(id), s.svc.Name)
		case s.ID != id && s.svc.Name == svc.Name:
			return fail(http.StatusConflict, "service %q is registered on this agent under ID %q: deregister it first", svc.Name, truncate(s.ID))
		case s.ID != id && s.svc.ID == svc.ID:
			return fail(http.StatusConflict, "ID %q names the same instance as %q", truncate(id), truncate(s.ID))
		}
	}
	entry := apiService{ID: id, Raw: json.RawMessage(bytes.Clone(raw)), svc: svc}
	if i >= 0 {
		next[i] = entry
	} else {
		next = append(next, entry)
	}
	return r.commit(next)
}

// commit applies next to the agent, then keeps it.
func (r *Registrar) commit(next []apiService) error {
	prev := r.api
	r.api = next
	if err := r.a.Apply(r.all()); err != nil {
		r.api = prev
		return fail(http.StatusBadRequest, "%v", err)
	}
	if err := r.persist(); err != nil {
		r.log.Error("registrations not kept; a restart will lose them", "err", err)
		return fail(http.StatusInternalServerError, "%v", err)
	}
	return nil
}

// deregister removes the registration with Consul ID (or instance id) id.
func (r *Registrar) deregister(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := slices.IndexFunc(r.api, func(s apiService) bool { return s.ID == id || s.svc.ID == id })
	if i < 0 {
		if slices.ContainsFunc(r.config, func(c agent.ServiceConfig) bool { return c.Name == id || c.ID == id }) {
			return fail(http.StatusConflict, "service %q is in the agent's config file; remove it there", truncate(id))
		}
		return fail(http.StatusNotFound, "Unknown service ID %q", truncate(id))
	}
	return r.commit(slices.Delete(slices.Clone(r.api), i, i+1))
}

// report takes a TTL report for the check with Consul's CheckID.
func (r *Registrar) report(checkID, report, output string) error {
	r.mu.Lock()
	all := r.all()
	r.mu.Unlock()
	service, name := "", ""
	for _, s := range all {
		_, api := s.Metadata[ConsulIDKey]
		for _, c := range s.Checks {
			if (api && c.Name == checkID) || (!api && "service:"+r.instanceID(s)+":"+c.Name == checkID) {
				service, name = s.Name, c.Name
			}
		}
	}
	if service == "" {
		return fail(http.StatusNotFound, "Unknown check ID %q", truncate(checkID))
	}
	if _, err := r.a.Report(service, name, report, output); err != nil {
		if errors.Is(err, agent.ErrNotFound) {
			return fail(http.StatusNotFound, "%v", err)
		}
		return fail(http.StatusBadRequest, "%v", err)
	}
	return nil
}

// Handler serves Consul's agent registration API: register, deregister,
// TTL reports, and what this agent registered.
func (r *Registrar) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/agent/service/register", func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, MaxRegistrationBytes))
		if err != nil {
			httpError(w, http.StatusRequestEntityTooLarge, "a registration is at most %d bytes", MaxRegistrationBytes)
			return
		}
		answer(w, r.register(body))
	})
	mux.HandleFunc("PUT /v1/agent/service/deregister/{id}", func(w http.ResponseWriter, req *http.Request) {
		answer(w, r.deregister(req.PathValue("id")))
	})
	for word, report := range map[string]string{"pass": "pass", "warn": "warn", "fail": "fail"} {
		mux.HandleFunc("PUT /v1/agent/check/"+word+"/{id}", func(w http.ResponseWriter, req *http.Request) {
			answer(w, r.report(req.PathValue("id"), report, req.URL.Query().Get("note")))
		})
	}
	mux.HandleFunc("PUT /v1/agent/check/update/{id}", func(w http.ResponseWriter, req *http.Request) {
		var u struct{ Status, Output string }
		if err := json.NewDecoder(http.MaxBytesReader(w, req.Body, 64<<10)).Decode(&u); err != nil {
			httpError(w, http.StatusBadRequest, "Request decode failed: %v", err)
			return
		}
		report := map[string]string{"passing": "pass", "warning": "warn", "critical": "fail"}[u.Status]
		if report == "" {
			httpError(w, http.StatusBadRequest, "Invalid check status: %q", truncate(u.Status))
			return
		}
		answer(w, r.report(req.PathValue("id"), report, u.Output))
	})
	mux.HandleFunc("GET /v1/agent/services", func(w http.ResponseWriter, _ *http.Request) {
		out := map[string]agentService{}
		for _, s := range r.services() {
			out[s.ID] = s
		}
		writeJSONBody(w, out)
	})
	mux.HandleFunc("GET /v1/agent/checks", func(w http.ResponseWriter, _ *http.Request) {
		writeJSONBody(w, r.checks())
	})
	return r.guard(mux)
}

// guard puts writes behind a write token and reads behind a read token
// when tokens are set; ?token= is refused as on every read.
func (r *Registrar) guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Query().Has("token") {
			httpError(w, http.StatusBadRequest, "?token= is refused: send the token in the X-Consul-Token header or as Authorization: Bearer")
			return
		}
		need := roles.ScopeRead
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			need = roles.ScopeWrite
		}
		if r.cfg.Tokens != nil && r.cfg.Tokens.Scope(requestToken(req)) < need {
			httpError(w, http.StatusForbidden, "Permission denied: a %s token is needed", map[roles.Scope]string{roles.ScopeRead: "read", roles.ScopeWrite: "write"}[need])
			return
		}
		h.ServeHTTP(w, req)
	})
}

// instanceID is the instance id s runs under.
func (r *Registrar) instanceID(s agent.ServiceConfig) string {
	if s.ID != "" {
		return s.ID
	}
	id, _ := r.a.ID(s.Name)
	return id
}

// services lists this agent's services as Consul's AgentService.
func (r *Registrar) services() []agentService {
	r.mu.Lock()
	all := r.all()
	r.mu.Unlock()
	out := make([]agentService, 0, len(all))
	for _, s := range all {
		id := r.instanceID(s)
		if cid := s.Metadata[ConsulIDKey]; cid != "" {
			id = cid
		}
		w := events.DefaultWeight
		if s.Weight != nil {
			w = *s.Weight
		}
		tags := s.Tags
		if tags == nil {
			tags = []string{}
		}
		out = append(out, agentService{ID: id, Service: s.Name, Tags: tags, Meta: s.Metadata, Port: s.Port, Address: s.Address, Weights: weights{Passing: w, Warning: 1}})
	}
	return out
}

// checks lists this agent's checks by Consul CheckID, with their status.
func (r *Registrar) checks() map[string]healthCheck {
	r.mu.Lock()
	all := r.all()
	r.mu.Unlock()
	results := r.a.Checks()
	out := map[string]healthCheck{}
	for _, s := range all {
		serviceID, api := s.Metadata[ConsulIDKey]
		if !api {
			serviceID = r.instanceID(s)
		}
		for _, res := range results[s.Name] {
			checkID := res.Name
			if !api {
				checkID = "service:" + serviceID + ":" + res.Name
			}
			out[checkID] = healthCheck{CheckID: checkID, Name: res.Name, Status: string(res.Status), Output: res.Output,
				ServiceID: serviceID, ServiceName: s.Name, ServiceTags: s.Tags, Type: res.Kind}
		}
	}
	return out
}

// answer writes an operation's outcome: 200 with no body, as Consul, or
// its error.
func answer(w http.ResponseWriter, err error) {
	var se statusError
	switch {
	case err == nil:
		w.WriteHeader(http.StatusOK)
	case errors.As(err, &se):
		httpError(w, se.code, "%v", se.err)
	default:
		httpError(w, http.StatusInternalServerError, "%v", err)
	}
}

func writeJSONBody(w http.ResponseWriter, v any) {
	body := mustJSON(v)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}
