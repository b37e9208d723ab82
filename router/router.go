package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"golang.org/x/sync/errgroup"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/events"
)

// Config configures a Router.
type Config struct {
	Table TableConfig
	// Workers is how many subscriptions share P.route.> (each delivers on
	// its own goroutine); default GOMAXPROCS.
	Workers int
	// MaxInflight bounds the routed calls in progress; default 4096.
	MaxInflight int
	// StatsInterval is how often the router publishes its traffic on
	// P.stats.router.<id>; default DefaultStatsInterval, negative: never.
	StatsInterval time.Duration
	// DrainTimeout bounds the wait for calls in progress at shutdown;
	// default 10s.
	DrainTimeout time.Duration
}

// Router answers requests on P.route.<service>.<endpoint> by forwarding
// them to one instance; its replies name it in Hail-Router. Several routers share the queue group
// P.router, so each request is routed once.
type Router struct {
	nc      *nats.Conn
	cfg     Config
	id      string // names its traffic snapshots and replies (Hail-Router)
	log     *slog.Logger
	table   *Table
	fwd     *forwarder
	ready   atomic.Bool
	serving chan struct{}
	bad     *endpointStats
}

// DefaultConfig is a router's configuration with every default: the one
// place they are written (the router program starts from it).
func DefaultConfig() Config {
	return Config{Table: TableConfig{Route: DefaultRoute(), Ejection: DefaultEjection()}, MaxInflight: 4096, DrainTimeout: 10 * time.Second}
}

// New makes a router on nc; zero fields of cfg take DefaultConfig's.
func New(nc *nats.Conn, cfg Config) (*Router, error) {
	d := DefaultConfig()
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = d.MaxInflight
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = d.DrainTimeout
	}
	if cfg.StatsInterval == 0 {
		cfg.StatsInterval = DefaultStatsInterval
	}
	t, err := NewTable(nc, cfg.Table)
	if err != nil {
		return nil, err
	}
	cfg.Table = t.cfg
	return &Router{nc: nc, cfg: cfg, id: uuid.NewString(), log: t.cfg.Logger.With("component", "router"), table: t,
		serving: make(chan struct{}), bad: t.m.endpoint(unknownLabel, unknownLabel)}, nil
}

// ID is the router's id, as its replies' Hail-Router header gives it.
func (r *Router) ID() string { return r.id }

// Table is the router's routing table.
func (r *Router) Table() *Table { return r.table }

// Ready reports whether the router is loaded and taking requests.
func (r *Router) Ready() bool { return r.ready.Load() && !r.table.BucketsLost() }

// Serving is closed once the router first takes requests.
func (r *Router) Serving() <-chan struct{} { return r.serving }

// Run loads the table, takes requests until ctx ends, then stops taking
// them and lets the calls in progress finish.
func (r *Router) Run(ctx context.Context) error {
	fwd, err := newForwarder(r.nc, r.table, forwarderConfig{MaxInflight: r.cfg.MaxInflight, Logger: r.cfg.Table.Logger})
	if err != nil {
		return err
	}
	r.fwd = fwd
	r.table.closings.notify = fwd.closeAttempts // before the table runs
	tableCtx, stopTable := context.WithCancel(context.WithoutCancel(ctx))
	defer stopTable()
	g, gctx := errgroup.WithContext(tableCtx)
	g.Go(func() error { return r.table.Run(gctx) })
	g.Go(func() error { return r.publishStats(gctx) })

	var svc *bus.Service
	select {
	case <-r.table.Ready():
		svc, err = r.subscribe()
	case <-ctx.Done():
	case <-gctx.Done():
	}
	if err == nil && ctx.Err() == nil && gctx.Err() == nil {
		r.ready.Store(true)
		close(r.serving)
		r.log.Info("router serving", "subject", r.cfg.Table.Subjects.RouteAll(), "workers", r.cfg.Workers)
		select {
		case <-ctx.Done():
		case <-gctx.Done():
		}
	}
	r.ready.Store(false)
	// Stop taking requests (what the server already delivered is still
	// routed), let the calls finish, then stop the table they read.
	errs := []error{err}
	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.DrainTimeout)
	defer cancel()
	if svc != nil {
		errs = append(errs, svc.Stop(drainCtx))
	}
	errs = append(errs, fwd.Close(drainCtx))
	stopTable()
	if terr := g.Wait(); terr != nil && !errors.Is(terr, context.Canceled) {
		errs = append(errs, terr)
	}
	r.log.Info("router stopped")
	return errors.Join(errs...)
}

// subscribe serves P.route.> as the NATS micro service hail-router, one
// endpoint (one subscription, delivering on its own goroutine) per worker.
func (r *Router) subscribe() (*bus.Service, error) {
	subject, queue := r.cfg.Table.Subjects.RouteAll(), r.cfg.Table.Subjects.RouterQueue()
	eps := make([]bus.Endpoint, r.cfg.Workers)
	for i := range eps {
		// The forwarder bounds what is in progress; beyond that requests
		// wait in the subscription rather than be dropped.
		eps[i] = bus.Endpoint{Name: fmt.Sprintf("route_%d", i+1), Subject: subject, Queue: queue, Handler: r.handle, PendingBytes: 256 << 20}
	}
	svc, err := bus.AddService(r.nc, micro.Config{
		Name: "hail-router", Version: events.Version,
		Description: "hail router: " + subject + " to one healthy instance",
	}, eps)
	if err != nil {
		return nil, err
	}
	if err := r.nc.Flush(); err != nil {
		_ = svc.Close()
		return nil, fmt.Errorf("flush subscriptions: %w", err)
	}
	return svc, nil
}

// answers reports whether the router may answer on reply: only under
// _INBOX. (PROTOCOL v1.2), so nobody makes it publish where the sender may
// not, and never into an inbox no caller could own ([trust]): the
// router's own (where its attempts' answers come, so a forged request
// could answer another caller's routed request) or discovery's (where its
// heartbeats' answers come). Callers, the console and instances calling
// other services are answered on their own inboxes.
func (r *Router) answers(reply string) bool {
	owner, ok := events.InboxOwner(reply)
	if !ok || strings.HasPrefix(reply, r.fwd.inbox) {
		return false
	}
	if p := r.nc.Opts.InboxPrefix; p != "" && strings.HasPrefix(reply, p+".") {
		return false
	}
	return owner != events.RoleRouter && owner != events.RoleDiscovery
}

func (r *Router) handle(m *nats.Msg) {
	if m.Reply != "" && !r.answers(m.Reply) {
		r.bad.outcome[outcomeBadRequest].Inc()
		return
	}
	service, endpoint, err := r.cfg.Table.Subjects.Parse().Route(m.Subject)
	if err != nil {
		r.bad.outcome[outcomeBadRequest].Inc()
		if m.Reply != "" {
			respond(r.nc, m.Reply, events.ErrorMsg(events.CodeBadRequest, err.Error()))
		}
		return
	}
	var done func(*nats.Msg, error)
	if reply := m.Reply; reply != "" {
		done = func(out *nats.Msg, err error) {
			if err != nil {
				out = errorMsg(err)
			} else {
				out.Header.Set(events.HeaderRouter, r.id)
			}
			respond(r.nc, reply, out)
		}
	}
	r.fwd.Forward(service, endpoint, m, time.Time{}, done)
}

func errorMsg(err error) *nats.Msg {
	var rerr *Error
	if errors.As(err, &rerr) {
		return events.ErrorMsg(rerr.Code, rerr.Message)
	}
	return events.ErrorMsg(events.CodeInternal, err.Error())
}

func respond(nc *nats.Conn, reply string, m *nats.Msg) {
	m.Subject = reply
	_ = nc.PublishMsg(m) // the caller's own timeout covers a lost reply
}
