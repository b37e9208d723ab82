package registry

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
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
	// load batches the entries of the first load (owned by the watch's
	// goroutine): they are decoded on every core while the watch
	// receives the next, and applied in order.
	load loadBatches

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
	f.flush()
	if !f.loaded {
		f.loaded = true
		f.log.Debug("registry loaded", "instances", f.Len())
		close(f.ready)
	}
}

// reset forgets the revisions of a bucket made again; its records stay
// until the new bucket's snapshot replaces or deletes them.
func (f *Follower) reset() {
	f.flush()
	f.log.Warn("hail_instances was made again; reloading the registry from it")
	f.Registry.reset()
}

// loadBatch is how many entries of the first load are decoded together.
const loadBatch = 512

// loadBatches are the first load's entries: pending, still coming in,
// and the batch being decoded (done is closed when it is).
type loadBatches struct {
	pending []decodedEntry
	busy    []decodedEntry
	done    chan struct{}
}

// decodedEntry is an entry with its record decoded (err: it is not a
// valid record of its key).
type decodedEntry struct {
	watch.Entry
	rec events.InstanceRecord
	err error
}

// apply takes in one entry. Until the first load is done, entries are
// batched and decoded on every core (the decoding is most of a cold
// start's time: 50,000 records); then one at a time, as they come.
func (f *Follower) apply(e watch.Entry) {
	if f.loaded {
		d := decodedEntry{Entry: e}
		d.decode()
		f.applyDecoded(d)
		return
	}
	f.load.pending = append(f.load.pending, decodedEntry{Entry: e})
	if len(f.load.pending) < loadBatch {
		return
	}
	f.finish()
	f.load.busy, f.load.pending = f.load.pending, make([]decodedEntry, 0, loadBatch)
	f.load.done = make(chan struct{})
	go func(batch []decodedEntry, done chan struct{}) {
		decodeAll(batch)
		close(done)
	}(f.load.busy, f.load.done)
}

// finish waits for the batch being decoded and applies it.
func (f *Follower) finish() {
	if f.load.done == nil {
		return
	}
	<-f.load.done
	for _, d := range f.load.busy {
		f.applyDecoded(d)
	}
	f.load.busy, f.load.done = nil, nil
}

// flush applies every entry batched, in order.
func (f *Follower) flush() {
	f.finish()
	decodeAll(f.load.pending)
	for _, d := range f.load.pending {
		f.applyDecoded(d)
	}
	f.load.pending = nil
}

// decodeAll decodes batch on every core.
func decodeAll(batch []decodedEntry) {
	workers := min(runtime.GOMAXPROCS(0), len(batch))
	if workers <= 1 {
		for i := range batch {
			batch[i].decode()
		}
		return
	}
	var wg sync.WaitGroup
	per := (len(batch) + workers - 1) / workers
	for lo := 0; lo < len(batch); lo += per {
		part := batch[lo:min(lo+per, len(batch))]
		wg.Go(func() {
			for i := range part {
				part[i].decode()
			}
		})
	}
	wg.Wait()
}

// decode decodes the entry's record, unless it is a delete.
func (d *decodedEntry) decode() {
	if d.Deleted {
		return
	}
	d.rec, d.err = events.DecodeInstanceRecord(d.Value)
	if d.err == nil && d.rec.Key() != d.Key {
		d.err = fmt.Errorf("record for %s stored under key %s", d.rec.Key(), d.Key)
	}
}

// applyDecoded applies one decoded entry and tells the subscribers when
// it is news.
func (f *Follower) applyDecoded(e decodedEntry) {
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
	if e.err != nil {
		f.reject(key, rev, e.err)
		return
	}
	c.Record = e.rec
	if f.Apply(key, e.rec, rev, false) {
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
