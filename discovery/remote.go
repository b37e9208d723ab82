package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/registry"
	"github.com/hailsd/hail/watch"
)

// RemoteBucket is where a region keeps the other regions' registries
// (PROTOCOL v1.5): keys <region>.<service>.<id>.
const RemoteBucket = bus.RemoteBucket

// DefaultRemoteStale is v1.5's remote_stale.
const DefaultRemoteStale = 10 * time.Second

// remoteConfig is what the remote part of a node is told.
type remoteConfig struct {
	region   string   // the node's own
	regions  []string // remote_regions
	stale    time.Duration
	replicas int
	log      *slog.Logger
	set      *metrics.Set
}

// remote keeps hail_remote: a KV bucket whose stream sources each remote
// region's KV_hail_instances across the leafnode (its domain's API
// prefix), renaming $KV.hail_instances.> to $KV.hail_remote.<region>.>.
// Not a KV mirror of a same-named bucket: nats.go turns on MirrorDirect
// for one, and the mirror then answers about half of the region's own
// hail_instances reads (v1.5). It judges each region stale from its
// source's activity, and makes a source that failed again: the server's
// own retry backs off to minutes, so start order would matter.
type remote struct {
	cfg remoteConfig
	js  jetstream.JetStream

	mu    sync.RWMutex
	kv    jetstream.KeyValue
	state map[string]sourceState // by region
	// recreated is when each region's source was last made again.
	recreated map[string]time.Time
}

// sourceState is one remote region's source as last seen.
type sourceState struct {
	Stale  bool
	Active time.Duration // since the source last delivered or heartbeat; -1: never
	Lag    uint64
	Err    string
}

func newRemote(nc *nats.Conn, cfg remoteConfig) (*remote, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	r := &remote{cfg: cfg, js: js, state: map[string]sourceState{}, recreated: map[string]time.Time{}}
	for _, region := range cfg.regions {
		r.state[region] = sourceState{Stale: true, Active: -1}
		cfg.set.GetOrCreateGauge(fmt.Sprintf(`hail_discovery_remote_stale{region=%q}`, region), func() float64 {
			if r.source(region).Stale {
				return 1
			}
			return 0
		})
	}
	return r, nil
}

// validateRemote checks the remote regions against the own one.
func validateRemote(own string, regions []string, stale time.Duration) error {
	var errs []error
	seen := map[string]bool{}
	for _, region := range regions {
		switch {
		case events.ValidateRegion(region) != nil:
			errs = append(errs, fmt.Errorf("remote_regions: %w", events.ValidateRegion(region)))
		case region == own:
			errs = append(errs, fmt.Errorf("remote_regions: %q is this node's own region", region))
		case seen[region]:
			errs = append(errs, fmt.Errorf("remote_regions: %q is listed twice", region))
		}
		seen[region] = true
	}
	if stale <= 0 {
		errs = append(errs, fmt.Errorf("remote_stale: %v is not above 0", stale))
	}
	return errors.Join(errs...)
}

// knows reports whether region is one this node answers for.
func (r *remote) knows(region string) bool { return slices.Contains(r.cfg.regions, region) }

func (r *remote) source(region string) sourceState {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.state[region]
}

func (r *remote) bucket() jetstream.KeyValue {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.kv
}

// subjectOf is the subject region's keys are stored under in hail_remote.
func subjectOf(region string) string { return "$KV." + RemoteBucket + "." + region + ".>" }

// sourceOf is hail_remote's source of region.
func sourceOf(region string) *jetstream.StreamSource {
	return &jetstream.StreamSource{
		Name:              "KV_" + bus.InstancesBucket,
		External:          &jetstream.ExternalStream{APIPrefix: "$JS." + region + ".API"},
		SubjectTransforms: []jetstream.SubjectTransformConfig{{Source: "$KV." + bus.InstancesBucket + ".>", Destination: subjectOf(region)}},
	}
}

func (r *remote) bucketConfig(regions []string) jetstream.KeyValueConfig {
	c := jetstream.KeyValueConfig{
		Bucket:      RemoteBucket,
		Description: "hail: the other regions' registries (PROTOCOL v1.5), sourced from their hail_instances",
		History:     1,
		MaxBytes:    bus.InstancesMaxBytes,
		Replicas:    r.cfg.replicas,
	}
	for _, region := range regions {
		c.Sources = append(c.Sources, sourceOf(region))
	}
	return c
}

// checkEvery is how often the sources are looked at: often enough that a
// region goes stale within a fraction of remote_stale of its silence.
func (r *remote) checkEvery() time.Duration {
	return min(max(r.cfg.stale/4, 100*time.Millisecond), 2*time.Second)
}

// run keeps hail_remote until ctx ends. With no remote region it has
// nothing to do.
func (r *remote) run(ctx context.Context) error {
	if len(r.cfg.regions) == 0 {
		return nil
	}
	log := r.cfg.log
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		t.Reset(r.checkEvery())
		if r.bucket() == nil {
			if err := r.ensure(ctx); err != nil {
				if ctx.Err() == nil {
					log.Warn("make hail_remote; trying again", "err", err)
				}
				continue
			}
		}
		if err := r.check(ctx); err != nil && ctx.Err() == nil {
			log.Debug("look at hail_remote's sources", "err", err)
		}
	}
}

// ensure makes hail_remote with a source per remote region, or updates
// it to them; the entries of a region no longer listed are purged.
func (r *remote) ensure(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var gone []string
	if s, err := r.js.Stream(cctx, "KV_"+RemoteBucket); err == nil {
		for _, src := range s.CachedInfo().Config.Sources {
			if region, ok := registry.SourceRegion(src.External, src.SubjectTransforms); ok && !r.knows(region) {
				gone = append(gone, region)
			}
		}
	}
	kv, err := r.js.CreateOrUpdateKeyValue(cctx, r.bucketConfig(r.cfg.regions))
	if err != nil {
		return fmt.Errorf("create %s: %w", RemoteBucket, err)
	}
	if len(gone) > 0 {
		s, err := r.js.Stream(cctx, "KV_"+RemoteBucket)
		if err != nil {
			return fmt.Errorf("look up %s: %w", RemoteBucket, err)
		}
		for _, region := range gone {
			if err := s.Purge(cctx, jetstream.WithPurgeSubject(subjectOf(region))); err != nil {
				return fmt.Errorf("purge region %s from %s: %w", region, RemoteBucket, err)
			}
			r.cfg.log.Info("region no longer in remote_regions: its entries are purged from hail_remote", "region", region)
		}
	}
	r.mu.Lock()
	r.kv = kv
	r.mu.Unlock()
	r.cfg.log.Info("hail_remote sources the remote regions", "remote_regions", r.cfg.regions, "remote_stale", r.cfg.stale)
	return nil
}

// check judges every source from hail_remote's stream info, and makes a
// failed one again, once per remote_stale at most.
func (r *remote) check(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := r.js.Stream(cctx, "KV_"+RemoteBucket)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		r.cfg.log.Warn("hail_remote was deleted; making it again")
		r.mu.Lock()
		r.kv = nil
		r.mu.Unlock()
		return nil
	}
	if err != nil {
		return err
	}
	info := s.CachedInfo()
	seen := map[string]*jetstream.StreamSourceInfo{}
	for _, si := range info.Sources {
		if region, ok := registry.SourceRegion(si.External, si.SubjectTransforms); ok {
			seen[region] = si
		}
	}
	now := time.Now()
	var failed []string
	for _, region := range r.cfg.regions {
		next := judgeSource(seen[region], r.cfg.stale)
		r.mu.Lock()
		prev := r.state[region]
		r.state[region] = next
		due := now.Sub(r.recreated[region]) >= r.cfg.stale
		r.mu.Unlock()
		if prev.Stale != next.Stale {
			if next.Stale {
				r.cfg.log.Warn("remote region stale: its instances are not routed to", "region", region, "active", next.Active, "source_err", next.Err)
			} else {
				r.cfg.log.Info("remote region fresh", "region", region, "lag", next.Lag)
			}
		}
		if next.Stale && due {
			failed = append(failed, region)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return r.recreate(ctx, failed, now)
}

// judgeSource is a region's state from its source's info (nil: the stream
// has no such source), stale by registry.SourceStale, the rule the router
// applies too.
func judgeSource(si *jetstream.StreamSourceInfo, stale time.Duration) sourceState {
	if si == nil {
		return sourceState{Stale: true, Active: -1, Err: "no source"}
	}
	st := sourceState{Active: si.Active, Lag: si.Lag, Stale: registry.SourceStale(si, stale)}
	if si.Error != nil {
		st.Err = si.Error.Error()
	}
	return st
}

// recreate takes the regions' sources off hail_remote and puts them back:
// the server sets each up at once, instead of at the end of its backoff.
// The entries stay, and the source resumes after the last it delivered.
func (r *remote) recreate(ctx context.Context, regions []string, now time.Time) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r.mu.Lock()
	for _, region := range regions {
		r.recreated[region] = now
	}
	r.mu.Unlock()
	keep := slices.DeleteFunc(slices.Clone(r.cfg.regions), func(region string) bool { return slices.Contains(regions, region) })
	if _, err := r.js.UpdateKeyValue(cctx, r.bucketConfig(keep)); err != nil {
		return fmt.Errorf("take the sources of %v off %s: %w", regions, RemoteBucket, err)
	}
	if _, err := r.js.UpdateKeyValue(cctx, r.bucketConfig(r.cfg.regions)); err != nil {
		return fmt.Errorf("put the sources of %v back on %s: %w", regions, RemoteBucket, err)
	}
	for _, region := range regions {
		r.cfg.set.GetOrCreateCounter(fmt.Sprintf(`hail_discovery_remote_sources_remade_total{region=%q}`, region)).Inc()
	}
	r.cfg.log.Debug("remote sources made again", "regions", regions)
	return nil
}

// records reads region's records in hail_remote that q's service (if any)
// names, each with its region and the region's staleness. It reads the
// bucket once: a region query is an operator's question, not the routing
// path, which follows hail_remote.
func (r *remote) records(ctx context.Context, region string, q events.InstancesQuery) ([]events.InstanceRecord, []uint64, error) {
	kv := r.bucket()
	if kv == nil {
		return nil, nil, fmt.Errorf("%s is not made yet", RemoteBucket)
	}
	filter := region + ".>"
	if q.Service != "" {
		filter = region + "." + q.Service + ".*"
	}
	entries, err := watch.Read(ctx, kv, filter)
	if err != nil {
		return nil, nil, err
	}
	stale := r.source(region).Stale
	var recs []events.InstanceRecord
	var revs []uint64
	for _, e := range entries {
		rec, err := events.DecodeInstanceRecord(e.Value)
		if err != nil || region+"."+rec.Key() != e.Key {
			continue // what the other region's registry ignores too
		}
		rec.Region, rec.Stale = region, stale
		recs = append(recs, rec)
		revs = append(revs, e.Rev)
	}
	return recs, revs, nil
}

// regionOf is a node's region: configured, else its server's JetStream
// domain, else events.DefaultRegion (PROTOCOL v1.5).
func regionOf(nc *nats.Conn, configured string) string {
	if configured != "" {
		return configured
	}
	if d := nc.ConnectedDomain(); d != "" {
		return d
	}
	return events.DefaultRegion
}
