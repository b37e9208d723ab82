package registry

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/watch"
)

// Change is one change to hail_instances the watch delivered: news, or the
// echo of a writer's own report.
type Change struct {
	Key     string
	Service string
	ID      string
	Record  events.InstanceRecord // the stored record; zero when Deleted
	Rev     uint64
	Deleted bool
}

// FollowConfig configures a follower of one bucket.
type FollowConfig struct {
	Logger *slog.Logger
	// Invalid is called for each entry that is not a valid record of its
	// key (someone's `nats kv put`): it is ignored, the last good record
	// stays. For the program's metric.
	Invalid func()
	// Metrics receives the watch's count of watches made again
	// (hail_watch_rewatches_total); nil: a private set.
	Metrics *metrics.Set
	// ProbeEvery is how often the watch looks for a stall; default
	// watch.DefaultProbeEvery.
	ProbeEvery time.Duration
}

func (c *FollowConfig) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Invalid == nil {
		c.Invalid = func() {}
	}
}

// watchConfig is the watch's part of c.
func (c FollowConfig) watchConfig(prefix string) watch.Config {
	return watch.Config{Prefix: prefix, Logger: c.Logger, Metrics: c.Metrics, ProbeEvery: c.ProbeEvery}
}

// Follower keeps a Registry current from a watch of hail_instances.
type Follower struct {
	*Registry
	w       *watch.Watch
	log     *slog.Logger
	invalid func()
	ready   chan struct{}
	loaded  bool // owned by the watch's goroutine

	subs subscribers[Change]
}

// NewFollower makes a follower of kv (hail_instances); Run follows it.
func NewFollower(kv jetstream.KeyValue, cfg FollowConfig) *Follower {
	cfg.setDefaults()
	f := &Follower{
		Registry: New(), log: cfg.Logger.With("component", "registry"), invalid: cfg.Invalid,
		ready: make(chan struct{}),
	}
	f.w = watch.New(kv, watch.Handler{Apply: f.apply, Synced: f.synced, Reset: f.reset}, cfg.watchConfig(""))
	return f
}

// Ready is closed once the bucket's contents as of the start are loaded.
func (f *Follower) Ready() <-chan struct{} { return f.ready }

// Subscribe calls fn with every change from now on, in order, on the
// follower's goroutine: fn may block (the follower waits), but must not
// call cancel. A subscriber that needs the current state reads the
// registry after subscribing; a change seen both ways is seen twice.
func (f *Follower) Subscribe(fn func(Change)) (cancel func()) { return f.subs.add(fn) }

// Run follows the bucket until ctx ends. A watch that closes or stalls is
// made again (the watch package), so Run returns only then.
func (f *Follower) Run(ctx context.Context) error { return f.w.Run(ctx) }

func (f *Follower) synced() {
	if !f.loaded {
		f.loaded = true
		f.log.Debug("registry loaded", "instances", f.Len())
		close(f.ready)
	}
}

// reset forgets the revisions of a bucket made again; its records stay
// until the new bucket's snapshot replaces or deletes them.
func (f *Follower) reset() {
	f.log.Warn("hail_instances was made again; reloading the registry from it")
	f.Registry.reset()
}

// apply decodes one entry, applies it and tells the subscribers when it
// is news.
func (f *Follower) apply(e watch.Entry) {
	key, rev := e.Key, e.Rev
	service, id, ok := splitKey(key)
	if !ok {
		f.reject(key, rev, fmt.Errorf("key is not <service>.<id>"))
		return
	}
	c := Change{Key: key, Service: service, ID: id, Rev: rev}
	if e.Deleted {
		c.Deleted = true
		if f.Apply(key, events.InstanceRecord{}, rev, true) {
			f.notify(c)
		}
		return
	}
	rec, err := events.DecodeInstanceRecord(e.Value)
	if err == nil && rec.Key() != key {
		err = fmt.Errorf("record for %s stored under key %s", rec.Key(), key)
	}
	if err != nil {
		f.reject(key, rev, err)
		return
	}
	c.Record = rec
	if f.Apply(key, rec, rev, false) {
		f.notify(c)
	}
}

func (f *Follower) reject(key string, rev uint64, err error) {
	f.pass(rev)
	f.invalid()
	f.log.Warn("ignoring invalid registry record; the last good one stays", "key", key, "revision", rev, "err", err)
}

func (f *Follower) notify(c Change) { f.subs.tell(c) }

// subscribers are the functions a follower tells of its changes.
type subscribers[T any] struct {
	mu   sync.Mutex
	subs map[*func(T)]struct{}
}

func (s *subscribers[T]) add(fn func(T)) (cancel func()) {
	p := &fn
	s.mu.Lock()
	if s.subs == nil {
		s.subs = map[*func(T)]struct{}{}
	}
	s.subs[p] = struct{}{}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.subs, p)
		s.mu.Unlock()
	}
}

// tell calls every subscriber with c, outside the lock: one may cancel
// another.
func (s *subscribers[T]) tell(c T) {
	s.mu.Lock()
	fns := make([]func(T), 0, len(s.subs))
	for p := range s.subs {
		fns = append(fns, *p)
	}
	s.mu.Unlock()
	for _, fn := range fns {
		fn(c)
	}
}
