package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/watch"
)

// RemoteChange is one change to hail_remote: a record of another region
// added, changed or deleted, or (Freshness) the region turning stale or
// fresh again.
type RemoteChange struct {
	Region string
	// Change is the record's, keyed <service>.<id> as in hail_instances;
	// zero for a freshness change.
	Change
	Freshness bool
	Stale     bool // with Freshness: which way it turned
}

// RemoteConfig configures a Remote.
type RemoteConfig struct {
	FollowConfig
	// StaleAfter is how long a region's source may be inactive before its
	// entries are stale (PROTOCOL v1.5 remote_stale). Default 10s.
	StaleAfter time.Duration
	// CheckEvery is how often the sources' activity is read. Default
	// StaleAfter/10, at most 1s.
	CheckEvery time.Duration
}

// DefaultRemoteStale is PROTOCOL v1.5's remote_stale.
const DefaultRemoteStale = 10 * time.Second

// Remote follows hail_remote, the other regions' registries that
// discovery sources into this region (PROTOCOL v1.5): one Registry per
// region, on the one watch, and each region's staleness, read from the
// bucket's stream sources (the server's "active": idle heartbeats keep a
// quiet but connected region fresh). A region stays stale until a
// source shows it fresh, and goes stale when its source is inactive
// for StaleAfter, is gone, or its activity cannot be read for as long.
type Remote struct {
	js      jetstream.JetStream
	cfg     RemoteConfig
	log     *slog.Logger
	invalid func()
	ready   chan struct{}
	loaded  bool // owned by the watch's goroutine
	subs    subscribers[RemoteChange]

	mu      sync.RWMutex
	regions map[string]*Registry
	fresh   map[string]bool
}

// NewRemote makes a follower of hail_remote on js; Run waits for the
// bucket (discovery makes it) and follows it.
func NewRemote(js jetstream.JetStream, cfg RemoteConfig) *Remote {
	cfg.setDefaults()
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = DefaultRemoteStale
	}
	if cfg.CheckEvery <= 0 {
		cfg.CheckEvery = min(cfg.StaleAfter/10, time.Second)
	}
	return &Remote{js: js, cfg: cfg, log: cfg.Logger.With("component", "remote"), invalid: cfg.Invalid,
		ready: make(chan struct{}), regions: map[string]*Registry{}, fresh: map[string]bool{}}
}

// Ready is closed once the bucket's contents as of the start are loaded.
func (r *Remote) Ready() <-chan struct{} { return r.ready }

// Subscribe calls fn with every change from now on (as
// Follower.Subscribe).
func (r *Remote) Subscribe(fn func(RemoteChange)) (cancel func()) { return r.subs.add(fn) }

// Stale reports whether region's entries are stale: not to be routed to.
func (r *Remote) Stale(region string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return !r.fresh[region]
}

// Regions are the regions with records, sorted.
func (r *Remote) Regions() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Sorted(maps.Keys(r.regions))
}

// Service returns region's records of service, ordered by id.
func (r *Remote) Service(region, service string) []events.InstanceRecord {
	r.mu.RLock()
	reg := r.regions[region]
	r.mu.RUnlock()
	if reg == nil {
		return nil
	}
	return reg.Service(service)
}

// Each calls f for every record of every region, in no order.
func (r *Remote) Each(f func(region string, rec events.InstanceRecord, rev uint64)) {
	r.mu.RLock()
	regs := maps.Clone(r.regions)
	r.mu.RUnlock()
	for name, reg := range regs {
		reg.Each(func(rec events.InstanceRecord, rev uint64) { f(name, rec, rev) })
	}
}

// Run waits for the bucket, then follows it and its sources' activity
// until ctx ends.
func (r *Remote) Run(ctx context.Context) error {
	kv, err := r.open(ctx)
	if err != nil {
		return nil // ctx ended
	}
	w := watch.New(kv, watch.Handler{Apply: r.apply, Synced: r.synced, Reset: r.reset}, r.cfg.watchConfig(""))
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return w.Run(gctx) })
	g.Go(func() error { r.checkSources(gctx, kv); return nil })
	return g.Wait()
}

// open waits for hail_remote: discovery makes it once it has remote
// regions, and a router may start first.
func (r *Remote) open(ctx context.Context) (jetstream.KeyValue, error) {
	delay := 100 * time.Millisecond
	for said := false; ; {
		kv, err := r.js.KeyValue(ctx, bus.RemoteBucket)
		if err == nil {
			if said {
				r.log.Info("remote registry found", "bucket", bus.RemoteBucket)
			}
			return kv, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !said {
			said = true
			r.log.Warn("waiting for the remote registry (does discovery have remote_regions?)", "bucket", bus.RemoteBucket, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// checkSources reads the sources' activity every CheckEvery and turns
// regions stale or fresh.
func (r *Remote) checkSources(ctx context.Context, kv jetstream.KeyValue) {
	lastRead := time.Now()
	tick := time.NewTicker(r.cfg.CheckEvery)
	defer tick.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, max(r.cfg.CheckEvery, time.Second))
		sources, err := streamSources(cctx, kv)
		cancel()
		now := time.Now()
		switch {
		case err == nil:
			lastRead = now
			r.setFresh(FreshRegions(sources, r.cfg.StaleAfter))
		case now.Sub(lastRead) >= r.cfg.StaleAfter:
			// What cannot be read for so long is not known to be fresh.
			r.setFresh(map[string]bool{})
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func streamSources(ctx context.Context, kv jetstream.KeyValue) ([]*jetstream.StreamSourceInfo, error) {
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", bus.RemoteBucket, err)
	}
	si, ok := st.(interface{ StreamInfo() *jetstream.StreamInfo })
	if !ok || si.StreamInfo() == nil {
		return nil, errors.New("no stream info in the bucket's status")
	}
	return si.StreamInfo().Sources, nil
}

// FreshRegions is which regions the sources of hail_remote keep fresh:
// those whose source is not SourceStale. A source names its region by its
// subject transform ($KV.hail_instances.> → $KV.hail_remote.<region>.>)
// or, failing that, its JetStream domain ($JS.<region>.API).
func FreshRegions(sources []*jetstream.StreamSourceInfo, staleAfter time.Duration) map[string]bool {
	fresh := map[string]bool{}
	for _, s := range sources {
		if s == nil {
			continue
		}
		if region, ok := SourceRegion(s.External, s.SubjectTransforms); ok && !SourceStale(s, staleAfter) {
			fresh[region] = true
		}
	}
	return fresh
}

// SourceStale is PROTOCOL v1.5's rule for a region's source, the one that
// discovery (which answers "stale": true and makes the source again) and
// the router (which routes to fresh regions only) both apply: stale when
// there is no source, it has never been active (Active is -1), has been
// inactive for more than staleAfter, or reports an error. A source's idle
// heartbeat counts as activity, so a quiet but connected region stays
// fresh.
func SourceStale(s *jetstream.StreamSourceInfo, staleAfter time.Duration) bool {
	return s == nil || s.Active < 0 || s.Active > staleAfter || s.Error != nil
}

// SourceRegion is the region a source of hail_remote brings in (from a
// source's config or its info): named by its subject transform or,
// failing that, its JetStream domain; false when neither names a valid
// region.
func SourceRegion(external *jetstream.ExternalStream, transforms []jetstream.SubjectTransformConfig) (string, bool) {
	prefix := "$KV." + bus.RemoteBucket + "."
	for _, t := range transforms {
		if rest, ok := strings.CutPrefix(t.Destination, prefix); ok {
			if region, _, ok := strings.Cut(rest, "."); ok && events.ValidateRegion(region) == nil {
				return region, true
			}
		}
	}
	if external != nil {
		if rest, ok := strings.CutPrefix(external.APIPrefix, "$JS."); ok {
			if region, ok := strings.CutSuffix(rest, ".API"); ok && events.ValidateRegion(region) == nil {
				return region, true
			}
		}
	}
	return "", false
}

func (r *Remote) setFresh(fresh map[string]bool) {
	r.mu.Lock()
	var turned []RemoteChange
	for region := range r.fresh {
		if !fresh[region] {
			turned = append(turned, RemoteChange{Region: region, Freshness: true, Stale: true})
		}
	}
	for region := range fresh {
		if !r.fresh[region] {
			turned = append(turned, RemoteChange{Region: region, Freshness: true})
		}
	}
	r.fresh = fresh
	r.mu.Unlock()
	for _, c := range turned {
		if c.Stale {
			r.log.Warn("remote region stale: not routed to", "region", c.Region, "stale_after", r.cfg.StaleAfter)
		} else {
			r.log.Info("remote region fresh", "region", c.Region)
		}
		r.subs.tell(c)
	}
}

func (r *Remote) synced() {
	if !r.loaded {
		r.loaded = true
		close(r.ready)
	}
}

// reset forgets every region's revisions: the bucket was made again.
func (r *Remote) reset() {
	r.log.Warn("hail_remote was made again; reloading it")
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, reg := range r.regions {
		reg.reset()
	}
}

func (r *Remote) region(name string) *Registry {
	r.mu.Lock()
	defer r.mu.Unlock()
	reg := r.regions[name]
	if reg == nil {
		reg = New()
		r.regions[name] = reg
	}
	return reg
}

// apply takes in one entry of hail_remote: <region>.<service>.<id>.
func (r *Remote) apply(e watch.Entry) {
	region, key, ok := strings.Cut(e.Key, ".")
	service, id, kok := splitKey(key)
	if !ok || !kok || events.ValidateRegion(region) != nil {
		r.reject(e, fmt.Errorf("key is not <region>.<service>.<id>"))
		return
	}
	reg := r.region(region)
	c := RemoteChange{Region: region, Change: Change{Key: key, Service: service, ID: id, Rev: e.Rev}}
	if e.Deleted {
		c.Deleted = true
		if reg.Apply(key, events.InstanceRecord{}, e.Rev, true) {
			r.subs.tell(c)
		}
		return
	}
	rec, err := events.DecodeInstanceRecord(e.Value)
	if err == nil && rec.Key() != key {
		err = fmt.Errorf("record for %s stored under key %s", rec.Key(), e.Key)
	}
	if err != nil {
		reg.pass(e.Rev)
		r.reject(e, err)
		return
	}
	c.Record = rec
	if reg.Apply(key, rec, e.Rev, false) {
		r.subs.tell(c)
	}
}

func (r *Remote) reject(e watch.Entry, err error) {
	r.invalid()
	r.log.Warn("ignoring invalid remote record; the last good one stays", "key", e.Key, "revision", e.Rev, "err", err)
}
