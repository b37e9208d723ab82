package registry

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/events"
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

// FollowConfig configures a Follower.
type FollowConfig struct {
	Logger *slog.Logger
	// Invalid is called for each entry that is not a valid record of its
	// key (someone's `nats kv put`): it is ignored, the last good record
	// stays. For the program's metric.
	Invalid func()
}

// Follower keeps a Registry current from a watch of hail_instances.
type Follower struct {
	*Registry
	kv      jetstream.KeyValue
	log     *slog.Logger
	invalid func()
	ready   chan struct{}

	mu   sync.Mutex
	subs map[*func(Change)]struct{}
}

// NewFollower makes a follower of kv (hail_instances); Run follows it.
func NewFollower(kv jetstream.KeyValue, cfg FollowConfig) *Follower {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Invalid == nil {
		cfg.Invalid = func() {}
	}
	return &Follower{
		Registry: New(), kv: kv, log: cfg.Logger.With("component", "registry"), invalid: cfg.Invalid,
		ready: make(chan struct{}), subs: map[*func(Change)]struct{}{},
	}
}

// Ready is closed once the bucket's contents as of the start are loaded.
func (f *Follower) Ready() <-chan struct{} { return f.ready }

// Subscribe calls fn with every change from now on, in order, on the
// follower's goroutine: fn may block (the follower waits), but must not
// call cancel. A subscriber that needs the current state reads the
// registry after subscribing; a change seen both ways is seen twice.
func (f *Follower) Subscribe(fn func(Change)) (cancel func()) {
	p := &fn
	f.mu.Lock()
	f.subs[p] = struct{}{}
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		delete(f.subs, p)
		f.mu.Unlock()
	}
}

// Run follows the bucket until ctx ends. A watch that closes while ctx
// lives is an error: the registry would silently go stale.
func (f *Follower) Run(ctx context.Context) error {
	w, err := f.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch bucket %s: %w", f.kv.Bucket(), err)
	}
	defer func() { _ = w.Stop() }()
	loaded := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("watch bucket %s closed", f.kv.Bucket())
			}
			if e == nil {
				if !loaded {
					loaded = true
					f.log.Debug("registry loaded", "instances", f.Len())
					close(f.ready)
				}
				continue
			}
			if c, ok := f.apply(e); ok {
				f.notify(c)
			}
		}
	}
}

// apply decodes one entry and applies it; ok is false for an entry that is
// invalid or older than what the registry holds.
func (f *Follower) apply(e jetstream.KeyValueEntry) (Change, bool) {
	key, rev := e.Key(), e.Revision()
	service, id, ok := splitKey(key)
	if !ok {
		f.reject(key, rev, fmt.Errorf("key is not <service>.<id>"))
		return Change{}, false
	}
	c := Change{Key: key, Service: service, ID: id, Rev: rev}
	if e.Operation() != jetstream.KeyValuePut {
		c.Deleted = true
		return c, f.Apply(key, events.InstanceRecord{}, rev, true)
	}
	rec, err := events.DecodeInstanceRecord(e.Value())
	if err == nil && rec.Key() != key {
		err = fmt.Errorf("record for %s stored under key %s", rec.Key(), key)
	}
	if err != nil {
		f.reject(key, rev, err)
		return Change{}, false
	}
	c.Record = rec
	return c, f.Apply(key, rec, rev, false)
}

func (f *Follower) reject(key string, rev uint64, err error) {
	f.pass(rev)
	f.invalid()
	f.log.Warn("ignoring invalid registry record; the last good one stays", "key", key, "revision", rev, "err", err)
}

func (f *Follower) notify(c Change) {
	f.mu.Lock()
	fns := make([]func(Change), 0, len(f.subs))
	for p := range f.subs {
		fns = append(fns, *p)
	}
	f.mu.Unlock()
	for _, fn := range fns {
		fn(c)
	}
}
