package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/hailsd/hail/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Bucket names of PROTOCOL.md.
const (
	InstancesBucket = "hail_instances"
	NodesBucket     = "hail_nodes"
	ConfigBucket    = "hail_config"
	// RemoteBucket holds the other regions' registries, sourced by
	// discovery (PROTOCOL v1.5): keys <region>.<service>.<id>.
	RemoteBucket = "hail_remote"
)

// DefaultNodeTTL is how long a discovery node's hail_nodes entry outlives
// its last refresh.
const DefaultNodeTTL = 3 * time.Second

// EventsStream keeps the health and node events for replay
// (`nats stream view HAIL_EVENTS`).
const EventsStream = "HAIL_EVENTS"

// Bounds of EventsStream and the registry. An event is small (its reason
// is cut to 256 bytes), so one subject (one instance, or one node) keeps
// at most 1,000 events of 4 KiB: 4 MiB of the stream's 256, and its own
// history only.
const (
	EventsMaxAge        = 7 * 24 * time.Hour
	EventsMaxBytes      = 256 << 20
	EventsMaxPerSubject = 1000
	EventsMaxMsgSize    = 4 << 10
	InstancesMaxBytes   = 1 << 30
)

// Buckets are the region's KV buckets and its event stream.
type Buckets struct {
	Instances jetstream.KeyValue
	Nodes     jetstream.KeyValue
	Config    jetstream.KeyValue
	Events    jetstream.Stream
	Replicas  int
	// Options made them (Replicas as found), to make them again.
	Options BucketOptions
}

// BucketOptions tunes EnsureBuckets.
type BucketOptions struct {
	// Replicas of each bucket; 0 means min(3, cluster size).
	Replicas int
	// NodeTTL is how long a hail_nodes entry lives unrefreshed; default
	// DefaultNodeTTL.
	NodeTTL time.Duration
	// Subjects names what EventsStream captures; the zero value is the
	// "hail" prefix.
	Subjects events.Subjects
}

// EnsureBuckets creates the buckets of PROTOCOL.md, or updates them to this
// configuration, and returns handles to them.
//
// hail_nodes expires entries by the bucket's max age: each refresh is a new
// message and the bucket keeps one per key, so an entry lapses NodeTTL after
// its node stops writing, and a limit marker tells watchers it went.
func EnsureBuckets(ctx context.Context, nc *nats.Conn, o BucketOptions) (*Buckets, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	ttl := o.NodeTTL
	if ttl <= 0 {
		ttl = DefaultNodeTTL
	}
	candidates := []int{o.Replicas}
	if o.Replicas <= 0 {
		candidates = []int{1}
		if nc.ConnectedClusterName() != "" {
			// A cluster smaller than three refuses R3; fall back one
			// step at a time.
			candidates = []int{3, 2, 1}
		}
	}
	var lastErr error
	for _, r := range candidates {
		b, err := ensure(ctx, js, r, ttl, o.Subjects, o.Replicas <= 0)
		if err == nil {
			b.Options = o
			b.Options.Replicas = b.Replicas
			return b, nil
		}
		lastErr = err
		if !tooFewServers(err) {
			break
		}
	}
	return nil, lastErr
}

// Missing names the buckets and the stream of b that no longer exist (an
// operator deleted one, say). Any other failure to look is an error: it
// says nothing of whether they exist.
func (b *Buckets) Missing(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	created, err := b.Created(ctx, js)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, name := range streamNames {
		if created[name].IsZero() {
			missing = append(missing, name)
		}
	}
	return missing, nil
}

// streamNames are the streams behind the buckets, and the events stream.
var streamNames = []string{"KV_" + InstancesBucket, "KV_" + NodesBucket, "KV_" + ConfigBucket, EventsStream}

// Created is when each stream of b was made (zero: it does not exist): a
// time that changes means the stream was deleted and made again, which a
// watch of the old one does not see.
func (b *Buckets) Created(ctx context.Context, js jetstream.JetStream) (map[string]time.Time, error) {
	out := make(map[string]time.Time, len(streamNames))
	for _, name := range streamNames {
		s, err := js.Stream(ctx, name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			out[name] = time.Time{}
		case err != nil:
			return nil, fmt.Errorf("look up stream %s: %w", name, err)
		default:
			out[name] = s.CachedInfo().Created
		}
	}
	return out, nil
}

// JetStream error codes that mean "not that many replicas here".
const (
	codeNoPeers               jetstream.ErrorCode = 10005
	codeInsufficientResources jetstream.ErrorCode = 10023
	codeReplicasNotSupported  jetstream.ErrorCode = 10074
)

// tooFewServers reports an error that fewer replicas may avoid.
func tooFewServers(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case codeNoPeers, codeInsufficientResources, codeReplicasNotSupported:
		return true
	}
	return false
}

func ensure(ctx context.Context, js jetstream.JetStream, replicas int, nodeTTL time.Duration, subjects events.Subjects, keepReplicas bool) (*Buckets, error) {
	// Size limits, so that nobody who may write a bucket can fill the
	// servers' disks with it: a value is at most a control message.
	cfgs := []jetstream.KeyValueConfig{
		{Bucket: InstancesBucket, Description: "hail registry: <service>.<id> -> InstanceRecord", History: 1, Replicas: replicas,
			MaxValueSize: events.MaxPayload, MaxBytes: InstancesMaxBytes},
		{Bucket: NodesBucket, Description: "hail live discovery nodes: <node-id> -> NodeRecord", History: 1, Replicas: replicas,
			TTL: nodeTTL, LimitMarkerTTL: max(nodeTTL, time.Second), MaxValueSize: 4 << 10, MaxBytes: 16 << 20},
		{Bucket: ConfigBucket, Description: "hail dynamic config: route.<service> -> RouteConfig", History: 5, Replicas: replicas,
			MaxValueSize: events.MaxPayload, MaxBytes: 64 << 20},
	}
	kvs := make([]jetstream.KeyValue, len(cfgs))
	for i, cfg := range cfgs {
		kv, err := retry(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return ensureKV(ctx, js, cfg, keepReplicas) })
		if err != nil {
			return nil, fmt.Errorf("create or update bucket %s (replicas %d): %w", cfg.Bucket, replicas, err)
		}
		kvs[i] = kv
	}
	scfg := jetstream.StreamConfig{
		Name:        EventsStream,
		Description: "hail health and node events, for replay",
		Subjects:    []string{subjects.HealthAll(), subjects.NodeEventAll()},
		MaxAge:      EventsMaxAge,
		MaxBytes:    EventsMaxBytes,
		// One instance's (or node's) events cannot push out everyone
		// else's history: each subject keeps its last ones only.
		MaxMsgsPerSubject: EventsMaxPerSubject,
		MaxMsgSize:        EventsMaxMsgSize,
		Discard:           jetstream.DiscardOld,
		Replicas:          replicas,
	}
	ev, err := retry(ctx, func(ctx context.Context) (jetstream.Stream, error) { return ensureStream(ctx, js, scfg, keepReplicas) })
	if err != nil {
		return nil, fmt.Errorf("create or update stream %s (replicas %d): %w", EventsStream, replicas, err)
	}
	st, err := retry(ctx, func(ctx context.Context) (jetstream.KeyValueStatus, error) { return kvs[0].Status(ctx) })
	if err != nil {
		return nil, fmt.Errorf("bucket %s status: %w", InstancesBucket, err)
	}
	actual := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas
	return &Buckets{Instances: kvs[0], Nodes: kvs[1], Config: kvs[2], Events: ev, Replicas: actual}, nil
}

// attemptTimeout bounds one JetStream API call of EnsureBuckets.
const attemptTimeout = 5 * time.Second

// retry runs f with a bounded context until it succeeds, fails for good,
// or ctx ends. Several nodes starting at once on a fresh cluster race to
// create the same streams, and a request that meets a stream being made
// can go unanswered or be refused for a moment; the next attempt finds the
// stream made.
func retry[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	delay := 50 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		v, err := f(actx)
		cancel()
		if err == nil || !transient(err) || ctx.Err() != nil {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(delay/2 + rand.N(delay)):
		}
		delay = min(2*delay, time.Second)
	}
}

// JetStream error codes that a later attempt may not meet.
const (
	codeClusterUnavailable jetstream.ErrorCode = 10008
	codeStreamNameInUse    jetstream.ErrorCode = 10058
)

func transient(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == codeClusterUnavailable || apiErr.ErrorCode == codeStreamNameInUse
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrBucketExists) ||
		errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) || errors.Is(err, jetstream.ErrNoStreamResponse)
}

// ensureKV opens a bucket, creates it when missing, and updates it only
// when its settings differ from cfg: nodes that agree write nothing.
// keepReplicas leaves an existing bucket's replica count alone.
func ensureKV(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig, keepReplicas bool) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return js.CreateKeyValue(ctx, cfg)
	}
	if err != nil {
		return nil, err
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, err
	}
	have := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config
	if keepReplicas {
		cfg.Replicas = have.Replicas
	}
	if have.MaxMsgsPerSubject == int64(max(cfg.History, 1)) && have.MaxAge == cfg.TTL &&
		have.SubjectDeleteMarkerTTL == cfg.LimitMarkerTTL && have.Replicas == cfg.Replicas &&
		have.MaxMsgSize == cfg.MaxValueSize && have.MaxBytes == cfg.MaxBytes {
		return kv, nil
	}
	return js.UpdateKeyValue(ctx, cfg)
}

// ensureStream is ensureKV for a plain stream.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, keepReplicas bool) (jetstream.Stream, error) {
	st, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return js.CreateStream(ctx, cfg)
	}
	if err != nil {
		return nil, err
	}
	have := st.CachedInfo().Config
	if keepReplicas {
		cfg.Replicas = have.Replicas
	}
	if slices.Equal(have.Subjects, cfg.Subjects) && have.MaxAge == cfg.MaxAge && have.MaxBytes == cfg.MaxBytes && have.Replicas == cfg.Replicas &&
		have.MaxMsgsPerSubject == cfg.MaxMsgsPerSubject && have.MaxMsgSize == cfg.MaxMsgSize {
		return st, nil
	}
	return js.UpdateStream(ctx, cfg)
}

// OpenBuckets returns handles to the region's buckets and event stream,
// waiting for them to exist: discovery nodes create them, and a router or
// console may well start first. It says once that it waits, and gives up
// only when ctx ends.
func OpenBuckets(ctx context.Context, nc *nats.Conn, log *slog.Logger) (*Buckets, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	delay := 100 * time.Millisecond
	for waited := false; ; waited = true {
		b, err := lookup(ctx, js)
		if err == nil {
			if waited {
				log.Info("buckets found")
			}
			return b, nil
		}
		if !waited {
			log.Warn("waiting for the registry buckets (is a discovery node running?)", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

func lookup(ctx context.Context, js jetstream.JetStream) (*Buckets, error) {
	var b Buckets
	var errs []error
	for name, dst := range map[string]*jetstream.KeyValue{InstancesBucket: &b.Instances, NodesBucket: &b.Nodes, ConfigBucket: &b.Config} {
		kv, err := js.KeyValue(ctx, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("bucket %s: %w", name, err))
			continue
		}
		*dst = kv
	}
	ev, err := js.Stream(ctx, EventsStream)
	if err != nil {
		errs = append(errs, fmt.Errorf("stream %s: %w", EventsStream, err))
	}
	b.Events = ev
	return &b, errors.Join(errs...)
}
