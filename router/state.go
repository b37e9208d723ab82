package router

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Ejection is passive outlier detection: an instance that did not answer
// (no responders, or a timeout) is taken out of this router's picks at
// once, for Base doubling with each ejection in a row up to Max, with
// jitter. It comes back when that time is up or when the registry reports
// it passing again after a spell out of passing. At most MaxShare of a
// service's instances (and always at least one) are out at a time, so a
// router that is itself cut off cannot eject a whole service. The router
// program's `ejection` section.
type Ejection struct {
	// Base time out for an instance that did not answer; doubled per
	// ejection in a row. Default 30s.
	Base time.Duration `koanf:"base"`
	// Max time out. Default 5m.
	Max time.Duration `koanf:"max"`
	// MaxShare of a service's instances out at once. Default 0.5.
	MaxShare float64 `koanf:"max_share"`
}

// DefaultEjection is the ejection a router starts from.
func DefaultEjection() Ejection {
	return Ejection{Base: 30 * time.Second, Max: 5 * time.Minute, MaxShare: 0.5}
}

// Validate checks an ejection policy, naming each wrong key relative to
// the router program's ejection section, which wraps it
// (config.Section). A table takes an invalid policy's defaults instead.
func (e Ejection) Validate() error {
	var errs []error
	if e.Base <= 0 {
		errs = append(errs, fmt.Errorf("base: %v must be positive", e.Base))
	}
	if e.Max < e.Base {
		errs = append(errs, fmt.Errorf("max: %v is below ejection.base (%v)", e.Max, e.Base))
	}
	if e.MaxShare <= 0 || e.MaxShare > 1 {
		errs = append(errs, fmt.Errorf("max_share: %g is out of range (0, 1]", e.MaxShare))
	}
	return errors.Join(errs...)
}

func (e *Ejection) setDefaults() {
	d := DefaultEjection()
	if e.Base <= 0 {
		e.Base = d.Base
	}
	if e.Max < e.Base {
		e.Max = max(e.Base, d.Max)
	}
	if e.MaxShare <= 0 || e.MaxShare > 1 {
		e.MaxShare = d.MaxShare
	}
}

// serviceState is what a service's successive views share.
type serviceState struct {
	ej       Ejection
	inflight atomic.Int64
	clock    atomic.Int64
	pickable atomic.Int64
	ejected  atomic.Int64
	budget   retryBudget
}

func newServiceState(e Ejection, d RouteDefaults) *serviceState {
	s := &serviceState{ej: e}
	s.budget.init(d.RetryBudget, d.MinRetriesPerSecond)
	return s
}

// eject takes t out for a while; it reports false when the share of the
// service already out forbids it.
func (s *serviceState) eject(t *Target) bool {
	if o := t.load.owner; o != nil && o != s {
		return o.eject(t) // another region's instance: bounded in its region
	}
	limit := max(1, int64(s.ej.MaxShare*float64(s.pickable.Load())))
	if s.ejected.Add(1) > limit {
		s.ejected.Add(-1)
		return false
	}
	l := t.load
	if !l.ejected.CompareAndSwap(false, true) {
		s.ejected.Add(-1)
		return true // already out
	}
	l.mu.Lock()
	d := s.ej.Base << min(l.streak, 10)
	l.streak++
	l.mu.Unlock()
	d = min(d, s.ej.Max)
	// ±20% so that routers that saw the same failure do not all come back
	// at once.
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	time.AfterFunc(d, func() { s.lift(l) })
	return true
}

// lift brings l back if it is out.
func (s *serviceState) lift(l *Load) {
	if l.ejected.CompareAndSwap(true, false) {
		s.ejected.Add(-1)
	}
}

func (l *Load) resetStreak() {
	l.mu.Lock()
	l.streak = 0
	l.mu.Unlock()
}

// retryBudget holds retry tokens: each request earns a share of one, and
// time adds the floor rate.
type retryBudget struct {
	mu        sync.Mutex
	tokens    float64
	earn      float64
	cap       float64
	perSecond float64
	last      time.Time
}

func (b *retryBudget) init(ratio, minPerSecond float64) {
	b.earn = ratio
	b.perSecond = minPerSecond
	// Ten seconds' worth of the floor: a long calm does not bank enough
	// to let a sudden outage double the load.
	b.cap = minPerSecond*10 + 1
	b.tokens = b.cap
	b.last = time.Now()
}

// deposit is called for every request.
func (b *retryBudget) deposit() {
	b.mu.Lock()
	b.tokens = min(b.cap, b.tokens+b.earn)
	b.mu.Unlock()
}

// withdraw takes one retry, reporting false when the budget is spent.
func (b *retryBudget) withdraw() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.tokens = min(b.cap, b.tokens+now.Sub(b.last).Seconds()*b.perSecond)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
