// Package instance is the SDK a Go service uses to join hail: it serves
// the service's endpoints on the queue-group and per-instance subjects,
// and runs a member (package member, shared with the agent) that
// announces it, answers heartbeats, announces again when discovery asks or
// loses sight of it, and leaves cleanly: deregister, stop taking requests,
// finish the ones in flight, close.
package instance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/google/uuid"
	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/identity"
	"github.com/hailsd/hail/member"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Config describes an instance. Service is required.
type Config struct {
	Service  string
	Version  string
	Weight   int  // 1..10000; 0 means events.DefaultWeight
	Drain    bool // announce weight 0: registered, but no new traffic
	AZ       string
	Hostname string // default os.Hostname()
	Metadata map[string]string
	// Subjects sets the prefix; the zero value is "hail".
	Subjects events.Subjects
	// Scoped announces "scoped": true (v1.2): heartbeats and routed
	// requests come on subjects under the service's name, so that a
	// svc-<service> credential may be confined to its own service.
	Scoped bool
	// HeartbeatInterval is discovery's heartbeat interval (default 1s);
	// the instance announces again after 3 of them without a heartbeat.
	HeartbeatInterval time.Duration
	// Capacity bounds requests handled at once (default 64); further
	// requests wait in the subscription, and the figure is reported in
	// heartbeat replies.
	Capacity int
	// DrainTimeout bounds how long Shutdown waits for requests in flight
	// (default 10s).
	DrainTimeout time.Duration
	Logger       *slog.Logger
	// Metrics, if set, receives hail_instance_requests_total{service,
	// endpoint,outcome} and hail_instance_request_duration_seconds{service}.
	Metrics *metrics.Set
	// Identity, when set, is the instance's own identity (PROTOCOL v1.6),
	// which nc was connected as (member.IdentityOptions with the
	// service's secret): the instance's id is the identity's, it is
	// scoped, and it announces and deregisters on its own subjects.
	Identity *identity.Identity
}

// Handler serves one request. The returned bytes are the reply; an error is
// sent as an error reply (an *Error keeps its code, anything else is 500).
// ctx ends when the instance gives up waiting for it at shutdown.
type Handler func(ctx context.Context, req *nats.Msg) ([]byte, error)

// Metadata keys of the instance's NATS micro service: micro makes its own
// ids and allows no dots in names, so the hail id and service ride here.
const (
	MetaID      = "hail_id"
	MetaService = "hail_service"
)

// Error is a handler error with a code for the caller.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s", e.Code, e.Message) }

// Instance is one running member of a service.
type Instance struct {
	cfg      Config
	nc       *nats.Conn
	id       string
	log      *slog.Logger
	handlers map[string]Handler
	order    []string

	mu      sync.Mutex
	started bool
	stopped bool
	svc     endpoints // a NATS micro service, or an identity's subscriptions; drained at shutdown
	member  *member.Member
	weight  int

	status     atomic.Value // events.Status
	inflight   atomic.Int64
	sem        chan struct{}
	work       sync.WaitGroup
	handlerCtx context.Context
	cancelWork context.CancelFunc
}

// New makes an instance with a fresh UUIDv7 id, or its identity's;
// nothing is sent until Start.
func New(nc *nats.Conn, cfg Config) (*Instance, error) {
	if err := events.ValidateService(cfg.Service); err != nil {
		return nil, fmt.Errorf("new instance: %w", err)
	}
	if cfg.Weight < 0 || cfg.Weight > events.MaxWeight {
		return nil, fmt.Errorf("new instance: weight %d is out of range 0..%d", cfg.Weight, events.MaxWeight)
	}
	if cfg.Weight == 0 {
		cfg.Weight = events.DefaultWeight
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = time.Second
	}
	if cfg.Capacity <= 0 {
		cfg.Capacity = 64
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	id, err := instanceID(&cfg)
	if err != nil {
		return nil, err
	}
	i := &Instance{
		cfg:      cfg,
		nc:       nc,
		id:       id,
		handlers: map[string]Handler{},
		sem:      make(chan struct{}, cfg.Capacity),
	}
	i.weight = cfg.Weight
	if cfg.Drain {
		i.weight = 0
	}
	i.log = cfg.Logger.With("component", "instance", "service", cfg.Service, "instance_id", i.id)
	i.status.Store(events.Passing)
	i.handlerCtx, i.cancelWork = context.WithCancel(context.Background())
	return i, nil
}

// instanceID is the id of an instance of cfg: its identity's (which
// makes it scoped), or a fresh UUIDv7.
func instanceID(cfg *Config) (string, error) {
	if cfg.Identity != nil {
		cfg.Scoped = true
		return cfg.Identity.ID(), nil
	}
	id, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("new instance id: %w", err)
	}
	return id.String(), nil
}

// ID is the instance's hail id.
func (i *Instance) ID() string { return i.id }

// Handle registers h for endpoint; call it before Start.
func (i *Instance) Handle(endpoint string, h Handler) error {
	if err := events.ValidateEndpoint(endpoint); err != nil {
		return fmt.Errorf("handle: %w", err)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.started {
		return errors.New("handle: instance already started")
	}
	if _, dup := i.handlers[endpoint]; dup {
		return fmt.Errorf("handle: endpoint %q registered twice", endpoint)
	}
	i.handlers[endpoint] = h
	i.order = append(i.order, endpoint)
	return nil
}

// SetStatus sets the status reported in heartbeat replies, for a local
// health check that knows the instance is degraded.
func (i *Instance) SetStatus(s events.Status) {
	if s.Valid() {
		i.status.Store(s)
	}
}

// SetWeight changes the weight and announces it (0 drains).
func (i *Instance) SetWeight(w int) error {
	if w < 0 || w > events.MaxWeight {
		return fmt.Errorf("weight %d is out of range 0..%d", w, events.MaxWeight)
	}
	i.mu.Lock()
	i.weight = w
	m := i.member
	i.mu.Unlock()
	if m != nil {
		m.Changed()
	}
	return nil
}

// Err is discovery's refusal of the instance's announce (a 4xx, wrapping
// member.ErrRefused), or nil. A refused instance keeps serving its queue
// group but announces no more until SetWeight changes what it announces.
func (i *Instance) Err() error {
	i.mu.Lock()
	m := i.member
	i.mu.Unlock()
	if m == nil {
		return nil
	}
	return m.Err()
}

// Announce is the message this instance announces with.
func (i *Instance) Announce() events.Announce {
	i.mu.Lock()
	defer i.mu.Unlock()
	eps := make([]events.Endpoint, len(i.order))
	for k, name := range i.order {
		eps[k] = events.Endpoint{Name: name}
	}
	return events.Announce{
		ID: i.id, Service: i.cfg.Service, Version: i.cfg.Version, Endpoints: eps,
		Weight: i.weight, AZ: i.cfg.AZ, Hostname: i.cfg.Hostname, Metadata: i.cfg.Metadata,
		TS: time.Now().UTC(), Scoped: i.cfg.Scoped,
	}
}

// Start subscribes the endpoints and heartbeats and announces. An absent
// discovery is not an error: the instance keeps announcing, backing off,
// until it is heartbeated (package member has the rules).
func (i *Instance) Start(ctx context.Context) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.started {
		return errors.New("start: instance already started")
	}
	if len(i.handlers) == 0 {
		return errors.New("start: no endpoints; call Handle first")
	}
	if err := i.subscribe(); err != nil {
		// Leave nothing half-subscribed; Start may be called again.
		if i.svc != nil {
			_ = i.svc.Stop(context.WithoutCancel(ctx))
		}
		i.svc = nil
		return fmt.Errorf("start: %w", err)
	}
	i.started = true
	i.log.Info("instance started", "endpoints", i.order, "weight", i.weight)
	return nil
}

func (i *Instance) subscribe() error {
	s := i.cfg.Subjects
	// Each endpoint twice: the service's queue group and this instance's
	// own subject (what routers send to); micro shows both under its name.
	eps := make([]bus.Endpoint, 0, 2*len(i.order))
	for _, ep := range i.order {
		h := i.serve(ep, i.handlers[ep])
		eps = append(eps,
			bus.Endpoint{Name: ep, Subject: s.Svc(i.cfg.Service, ep), Queue: s.QueueGroup(i.cfg.Service), Handler: h},
			bus.Endpoint{Name: ep, Subject: s.InstOf(i.cfg.Service, i.id, ep, i.cfg.Scoped), Handler: h})
	}
	svc, err := serveEndpoints(i.nc, micro.Config{
		Name:        bus.MicroName(i.cfg.Service),
		Version:     i.cfg.Version,
		Description: "hail instance of " + i.cfg.Service,
		Metadata:    map[string]string{MetaID: i.id, MetaService: i.cfg.Service, "az": i.cfg.AZ},
	}, eps, i.cfg.Identity != nil)
	if err != nil {
		return err
	}
	i.svc = svc
	if err := i.nc.Flush(); err != nil {
		return fmt.Errorf("flush subscriptions: %w", err)
	}
	// The member last, so that no failure after it must close it: its
	// loop builds the announce under i.mu, which Start holds, and closing
	// it here would wait for that loop forever. Its heartbeat subscription needs no flush: the server takes
	// it before the announce that follows it on this connection.
	conn := member.NewConn(i.nc, s, i.cfg.HeartbeatInterval)
	if i.cfg.Identity != nil {
		conn = member.NewIdentityConn(i.nc, s, i.cfg.HeartbeatInterval, i.cfg.Service, i.id)
	}
	m, err := conn.Join(member.Config{
		Service: i.cfg.Service, ID: i.id, Scoped: i.cfg.Scoped,
		Announce: i.Announce, Report: i.report, Logger: i.log,
	})
	if err != nil {
		return err
	}
	i.member = m
	return nil
}

func (i *Instance) report() events.HeartbeatReply {
	return events.HeartbeatReply{
		Status:   i.status.Load().(events.Status),
		Inflight: int(i.inflight.Load()),
		Capacity: i.cfg.Capacity,
	}
}

func (i *Instance) serve(endpoint string, h Handler) nats.MsgHandler {
	series := func(outcome string) *metrics.Counter {
		return i.cfg.Metrics.GetOrCreateCounter(fmt.Sprintf(`hail_instance_requests_total{service=%q,endpoint=%q,outcome=%q}`, i.cfg.Service, endpoint, outcome))
	}
	ok, failed := series("ok"), series("error")
	took := i.cfg.Metrics.GetOrCreateHistogram(fmt.Sprintf(`hail_instance_request_duration_seconds{service=%q}`, i.cfg.Service))
	return func(m *nats.Msg) {
		// At capacity this blocks the subscription, so requests queue at
		// this instance (and show in its in-flight figure) instead of
		// multiplying goroutines.
		i.sem <- struct{}{}
		i.inflight.Add(1)
		i.work.Add(1)
		go func() {
			defer func() {
				i.inflight.Add(-1)
				<-i.sem
				i.work.Done()
			}()
			start := time.Now()
			data, err := h(i.handlerCtx, m)
			took.UpdateDuration(start)
			if err != nil {
				failed.Inc()
			} else {
				ok.Inc()
			}
			if m.Reply == "" {
				return
			}
			var out *nats.Msg
			if err != nil {
				var herr *Error
				if errors.As(err, &herr) {
					out = events.ErrorMsg(herr.Code, herr.Message)
				} else {
					out = events.ErrorMsg(events.CodeInternal, err.Error())
				}
			} else {
				out = nats.NewMsg("")
				out.Data = data
			}
			out.Header.Set(events.HeaderInstance, i.id)
			out.Subject = m.Reply
			if err := i.nc.PublishMsg(out); err != nil {
				i.log.Debug("reply lost", "err", err)
			}
		}()
	}
}

// Shutdown leaves the service: it deregisters, stops taking requests,
// waits for the ones in flight (at most DrainTimeout or until ctx ends),
// then stops answering heartbeats. Safe to call more than once.
func (i *Instance) Shutdown(ctx context.Context) error {
	i.mu.Lock()
	if !i.started || i.stopped {
		i.mu.Unlock()
		return nil
	}
	i.stopped = true
	i.mu.Unlock()
	err := i.member.Leave(ctx, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, i.cfg.DrainTimeout)
		defer cancel()
		return i.drain(ctx)
	})
	i.cancelWork()
	i.log.Info("instance stopped")
	return err
}

// drain stops the endpoint subscriptions, lets the server-side queue empty
// into the handlers, and waits for the handlers to finish.
func (i *Instance) drain(ctx context.Context) error {
	if err := i.svc.Stop(ctx); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		i.work.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for %d requests in flight: %w", i.inflight.Load(), ctx.Err())
	}
}
