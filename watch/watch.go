// Package watch is hail's one way of following a KV bucket: a Watch
// delivers the bucket's values as of its start, marks the end of that
// snapshot, then every change, in revision order, and watches again
// whenever the watch closes, stalls or the bucket is made anew. Every
// follower of every bucket (the registry's three) is built on it, so a
// watch that ends never stops a program and every reader recovers the
// same way.
//
// Watching again replays the bucket. A value the follower was already
// given is not given again (a delete whose marker the bucket keeps may
// be: only present keys are held, so churn does not grow the watch); keys
// that went while nobody watched are given as deletes at the end of the
// replay; and when the bucket was deleted and
// made again (its revisions start over), the follower is told first
// (Reset), so that it forgets its revisions.
package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go/jetstream"
)

// Entry is one value of the bucket, or its deletion.
type Entry struct {
	Key     string
	Value   []byte // nil when Deleted
	Rev     uint64
	Deleted bool
}

// Handler takes in what a Watch delivers, on the watch's goroutine, one
// call at a time.
type Handler struct {
	// Apply takes in one change, in revision order per key. During a
	// replay it gets only what differs from what it was given before, and
	// the deletes the bucket still marks (a delete of a key it lacks is
	// nothing).
	Apply func(Entry)
	// Synced marks the end of a snapshot: everything the bucket held when
	// the watch (first or again) started has been applied. It may be nil.
	Synced func()
	// Reset says the bucket was made again: revisions start over, and the
	// entries that follow replace what was applied before (keys it no
	// longer holds come as deletes before Synced). It may be nil.
	Reset func()
}

// Config configures a Watch.
type Config struct {
	// Prefix keeps only the keys that start with it (route. of
	// hail_config); empty keeps all. The consumer follows the whole
	// bucket either way, so that a stall shows as a revision of the
	// bucket never delivered.
	Prefix string
	Logger *slog.Logger
	// Metrics counts the watches made again:
	// hail_watch_rewatches_total{bucket,reason}. Nil: a private set.
	Metrics *metrics.Set
	// ProbeEvery is how often the watch looks at the bucket's stream to
	// find a stall or a bucket made anew. Default 2s.
	ProbeEvery time.Duration
}

// DefaultProbeEvery is how often a watch looks at its bucket by default.
const DefaultProbeEvery = 2 * time.Second

// Why a watch is made again (the reason label).
const (
	reasonClosed    = "closed"
	reasonStalled   = "stalled"
	reasonRecreated = "recreated"
)

// Watch follows one bucket for a Handler. Run it once.
type Watch struct {
	kv  jetstream.KeyValue
	cfg Config
	h   Handler
	log *slog.Logger
	set *metrics.Set

	// Owned by Run.
	held    map[string]uint64 // the keys applied and present, at their revision
	last    uint64            // the highest revision the consumer delivered
	created time.Time         // when the followed stream was made
}

// New makes a watch of kv for h; Run follows it.
func New(kv jetstream.KeyValue, h Handler, cfg Config) *Watch {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	if cfg.ProbeEvery <= 0 {
		cfg.ProbeEvery = DefaultProbeEvery
	}
	if h.Synced == nil {
		h.Synced = func() {}
	}
	if h.Reset == nil {
		h.Reset = func() {}
	}
	w := &Watch{kv: kv, cfg: cfg, h: h, set: cfg.Metrics, held: map[string]uint64{}}
	if kv != nil {
		w.log = cfg.Logger.With("bucket", kv.Bucket())
	}
	return w
}

// Run follows the bucket until ctx ends; it returns nil then, and never
// earlier: a watch that cannot be made is tried again, and logged once
// until it can.
func (w *Watch) Run(ctx context.Context) error {
	first := true
	reason := ""
	for ctx.Err() == nil {
		kw, reset, upTo := w.open(ctx, first)
		if kw == nil {
			return nil // ctx ended
		}
		if !first {
			if reset {
				reason = reasonRecreated
			}
			w.set.GetOrCreateCounter(fmt.Sprintf(`hail_watch_rewatches_total{bucket=%q,reason=%q}`, w.kv.Bucket(), reason)).Inc()
			w.log.Warn("watching the bucket again", "reason", reason)
		}
		if reset {
			w.h.Reset()
			w.last = 0
		}
		w.last = max(w.last, upTo)
		reason = w.follow(ctx, kw, !first, reset)
		_ = kw.Stop()
		first = false
	}
	return nil
}

// open makes a watch, trying again with a growing pause until it can or
// ctx ends (nil then). reset says the bucket is not the one followed
// before; upTo is its last revision when the watch began, which the
// snapshot covers (a revision gone since, expired say, is never
// delivered, and must not look like a stall).
func (w *Watch) open(ctx context.Context, first bool) (kw jetstream.KeyWatcher, reset bool, upTo uint64) {
	pause := 250 * time.Millisecond
	failing := false
	for {
		st, err := w.status(ctx)
		if err == nil {
			kw, err = w.kv.WatchAll(ctx)
			if err == nil {
				if failing {
					w.log.Info("watching the bucket after failures")
				}
				reset = !first && !w.created.IsZero() && !st.Created.Equal(w.created)
				w.created = st.Created
				return kw, reset, st.LastSeq
			}
		}
		if ctx.Err() != nil {
			return nil, false, 0
		}
		if !failing {
			failing = true
			w.log.Warn("cannot watch the bucket; trying again until it can", "err", err)
		} else {
			w.log.Debug("watch bucket", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, false, 0
		case <-time.After(pause):
		}
		pause = min(2*pause, 10*time.Second)
	}
}

// lookupTimeout is the least time a look at the stream is given.
const lookupTimeout = 2 * time.Second

// streamState is what a look at the bucket's stream tells.
type streamState struct {
	Created time.Time
	LastSeq uint64
}

// status looks the bucket's stream up, bounded by a probe period but
// given at least lookupTimeout (a busy server answers late, not never).
func (w *Watch) status(ctx context.Context) (streamState, error) {
	sctx, cancel := context.WithTimeout(ctx, max(w.cfg.ProbeEvery, lookupTimeout))
	defer cancel()
	st, err := w.kv.Status(sctx)
	if err != nil {
		return streamState{}, fmt.Errorf("look up bucket %s: %w", w.kv.Bucket(), err)
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok || bs.StreamInfo() == nil {
		return streamState{}, errors.New("bucket status carries no stream info")
	}
	info := bs.StreamInfo()
	return streamState{Created: info.Created, LastSeq: info.State.LastSeq}, nil
}

// follow applies one watch's updates until it closes, stalls, its bucket
// is made anew or ctx ends, and says which. replay: the watch was made
// again, so its snapshot is compared with what was applied; reset: the
// bucket is new, so revisions say nothing.
func (w *Watch) follow(ctx context.Context, kw jetstream.KeyWatcher, replay, reset bool) string {
	var seen map[string]bool // keys of the snapshot, while replaying
	if replay {
		seen = map[string]bool{}
	}
	// The looks at the stream run beside the updates, so that a slow
	// answer never holds a change up.
	probes := make(chan streamState)
	pctx, stopProbes := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.probe(pctx, probes)
	}()
	defer func() {
		stopProbes()
		wg.Wait()
	}()
	// A stall is a revision the stream held at one look and the watch
	// has still not delivered, with nothing delivered in between.
	var owed uint64
	var owedAt time.Time
	delivered := false
	for {
		select {
		case <-ctx.Done():
			return ""
		case e, ok := <-kw.Updates():
			if !ok {
				return reasonClosed
			}
			delivered = true
			if e == nil {
				if seen != nil {
					w.gone(seen)
					seen = nil
				}
				w.h.Synced()
				continue
			}
			w.last = max(w.last, e.Revision())
			if seen != nil {
				seen[e.Key()] = e.Operation() == jetstream.KeyValuePut
			}
			w.apply(e, reset && seen != nil)
		case st := <-probes:
			if !st.Created.Equal(w.created) {
				return reasonRecreated
			}
			// Entries waiting in the channel mean a slow follower, not a
			// stalled consumer; and a look that came right after the last
			// (both taken while the follower was busy) is too soon to say.
			if !delivered && owed > w.last && len(kw.Updates()) == 0 && time.Since(owedAt) >= w.cfg.ProbeEvery/2 {
				return reasonStalled
			}
			owed, owedAt, delivered = st.LastSeq, time.Now(), false
		}
	}
}

// probe looks at the bucket's stream every probe period and sends what
// it saw until ctx ends.
func (w *Watch) probe(ctx context.Context, out chan<- streamState) {
	tick := time.NewTicker(w.cfg.ProbeEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		st, err := w.status(ctx)
		if err != nil {
			// No leader for a moment, a deleted bucket: a look that
			// fails says nothing of the watch.
			w.log.Debug("probe the bucket", "err", err)
			continue
		}
		select {
		case out <- st:
		case <-ctx.Done():
			return
		}
	}
}

// apply gives e to the handler unless it was given already: fresh is set
// while replaying a new bucket, whose revisions cannot be compared. Only
// present keys are held (a bucket's deleted keys would grow without
// bound), so a replay gives again the deletes whose markers the bucket
// keeps; a follower takes a delete of what it lacks as nothing.
func (w *Watch) apply(e jetstream.KeyValueEntry, fresh bool) {
	key, rev := e.Key(), e.Revision()
	if !strings.HasPrefix(key, w.cfg.Prefix) {
		return
	}
	if have, ok := w.held[key]; ok && !fresh && rev <= have {
		return // replayed, or older than what was applied
	}
	if e.Operation() != jetstream.KeyValuePut {
		delete(w.held, key)
		w.h.Apply(Entry{Key: key, Rev: rev, Deleted: true})
		return
	}
	w.held[key] = rev
	w.h.Apply(Entry{Key: key, Value: e.Value(), Rev: rev})
}

// gone deletes the keys applied before a replay that the replay did not
// list as present: they went while the bucket was not watched.
func (w *Watch) gone(present map[string]bool) {
	for key, rev := range w.held {
		if present[key] {
			continue
		}
		delete(w.held, key)
		w.h.Apply(Entry{Key: key, Rev: max(rev, w.last), Deleted: true})
	}
}
