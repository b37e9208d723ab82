// Package member is the instance side of hail's protocol, written once: an
// instance announces itself, answers its heartbeats (status, load figures,
// checks), announces again when a hail.discover asks (within the spread it
// names) or when no heartbeat came for three intervals, backs off with
// jitter while announces are not taken, stops on a refusal, and on leaving
// deregisters before its owner drains. The SDK (package instance) and the
// agent (each of its services) run a Member; the swarm, with too many
// instances for a goroutine each, runs the same decisions (decide.go) from
// one scheduler and announces through the same Conn.
package member

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hailsd/hail/events"
)

// Config describes one member.
type Config struct {
	Service string
	ID      string
	// Scoped: heartbeats come on P.hb.<service>.<id> (v1.2), else on
	// P.hb.<id>.
	Scoped bool
	// Announce is what the member announces, built afresh for every
	// announce so that its figures (an agent's checks) are current.
	Announce func() events.Announce
	// Report answers a heartbeat: status, in-flight, capacity, checks. The
	// member sets the id.
	Report func() events.HeartbeatReply
	Logger *slog.Logger
}

// Member is one instance's side of the protocol, from Join to Leave.
type Member struct {
	cfg  Config
	conn *Conn
	log  *slog.Logger
	resp *Responder

	change chan struct{}      // what it announces changed
	ask    chan time.Duration // a discover's spread
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	err     error // the last announce's refusal
	stopped bool
}

// Join subscribes the member's heartbeats, adds it to the Conn's hearers
// of hail.discover, and starts announcing it (the first announce at once).
// An absent discovery is not an error: the member keeps announcing, backing
// off, until one takes it.
func (c *Conn) Join(cfg Config) (*Member, error) {
	if cfg.Service == "" || cfg.ID == "" || cfg.Announce == nil || cfg.Report == nil {
		return nil, errors.New("join: a member needs a service, an id, Announce and Report")
	}
	if err := c.identity.check(cfg); err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Member{
		cfg: cfg, conn: c,
		log:    cfg.Logger.With("service", cfg.Service, "instance_id", cfg.ID),
		change: make(chan struct{}, 1),
		ask:    make(chan time.Duration, 1),
		done:   make(chan struct{}),
	}
	r, err := Respond(c.nc, c.subjects, events.HeartbeatTarget(cfg.Service, cfg.ID, cfg.Scoped), cfg.Report)
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	m.resp = r
	if err := c.join(m); err != nil {
		_ = r.Stop()
		return nil, fmt.Errorf("join: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go m.run(ctx)
	return m, nil
}

// ID is the member's instance id.
func (m *Member) ID() string { return m.cfg.ID }

// LastBeat is when the last heartbeat came; zero if none has.
func (m *Member) LastBeat() time.Time { return m.resp.LastBeat() }

// Err is the refusal of the last announce (wrapping ErrRefused), or nil.
// A refused member announces no more until Changed.
func (m *Member) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Changed says that what the member announces changed: it announces at
// once, and again until discovery takes it.
func (m *Member) Changed() {
	select {
	case m.change <- struct{}{}:
	default: // one is pending; it reads the announce when it goes
	}
}

func (m *Member) discovered(spread time.Duration) {
	select {
	case m.ask <- spread:
	default: // one is pending
	}
}

// Jitter is a random duration in [0, d), 0 when d <= 0: the jitter the
// decisions take, for a member's loop and the swarm's scheduler.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

// run is the member's one goroutine: it sleeps until the state says an
// announce is due, reading the last heartbeat when it wakes (a heartbeat
// costs the loop nothing).
func (m *Member) run(ctx context.Context) {
	defer close(m.done)
	interval := m.conn.interval
	s := Begin(time.Now())
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.change:
			s = Changed(s, time.Now())
		case spread := <-m.ask:
			s = Discovered(s, time.Now(), spread, Jitter)
		case <-timer.C:
		}
		now := time.Now()
		s = Beat(s, m.resp.LastBeat(), interval)
		if Due(s, now) {
			unheard := Unheard(s, now)
			o := m.conn.Announce(ctx, m.cfg.Announce())
			if ctx.Err() != nil {
				return
			}
			s = Announced(s, o, time.Now(), interval, Jitter)
			m.record(o, unheard, time.Until(s.Next))
		}
		if wake := Wake(s); wake.IsZero() {
			timer.Stop()
		} else {
			timer.Reset(time.Until(wake))
		}
	}
}

// record keeps a refusal for Err and logs the state changes.
func (m *Member) record(o Outcome, unheard bool, next time.Duration) {
	m.mu.Lock()
	m.err = nil
	if o.Kind == Refused {
		m.err = o.Err
	}
	m.mu.Unlock()
	switch {
	case o.Kind == Refused:
		m.log.Error("announce refused; not announcing again until it changes", "code", o.Code, "err", o.Err)
	case o.Kind != Taken:
		m.log.Debug("announce not taken; will announce again", "outcome", o.Kind.String(), "next_in", next.Round(time.Millisecond), "err", o.Err)
	case unheard:
		m.log.Info("announced again: no heartbeat for 3 intervals")
	default:
		m.log.Debug("announced")
	}
}

// stop ends the announce loop once; false if it had ended already.
func (m *Member) stop() bool {
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return false
	}
	m.stopped = true
	m.mu.Unlock()
	m.cancel()
	<-m.done
	return true
}

// Leave ends the member the protocol's way: it stops announcing,
// deregisters (so routers stop sending), runs drain while heartbeats are
// still answered (the owner finishes what it holds; drain may be nil),
// then stops answering. Safe to call more than once.
func (m *Member) Leave(ctx context.Context, drain func(context.Context) error) error {
	if !m.stop() {
		return nil
	}
	var errs []error
	if err := m.conn.Deregister(ctx, m.cfg.Service, m.cfg.ID, "shutdown"); err != nil {
		if !errors.Is(err, ErrUnanswered) {
			errs = append(errs, err)
		}
		m.log.Warn("deregister", "err", err)
	}
	if drain != nil {
		if err := drain(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, m.close())
	return errors.Join(errs...)
}

// Close ends the member without deregistering it (an agent's service
// restarted with the same id keeps its registration). Safe to call more
// than once, and after Leave.
func (m *Member) Close() error {
	if !m.stop() {
		return nil
	}
	return m.close()
}

func (m *Member) close() error {
	return errors.Join(m.resp.Stop(), m.conn.leave(m))
}
