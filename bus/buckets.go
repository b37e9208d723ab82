package bus

import (
	"context"
	"errors"
	"fmt"
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
)

// DefaultNodeTTL is how long a discovery node's hail_nodes entry outlives
// its last refresh.
const DefaultNodeTTL = 3 * time.Second

// EventsStream keeps the health and node events for replay
// (`nats stream view HAIL_EVENTS`).
const EventsStream = "HAIL_EVENTS"

// Bounds of EventsStream.
const (
	EventsMaxAge   = 7 * 24 * time.Hour
	EventsMaxBytes = 256 << 20
)

// Buckets are the region's KV buckets and its event stream.
type Buckets struct {
	Instances jetstream.KeyValue
	Nodes     jetstream.KeyValue
	Config    jetstream.KeyValue
	Events    jetstream.Stream
	Replicas  int
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
		b, err := ensure(ctx, js, r, ttl, o.Subjects)
		if err == nil {
			return b, nil
		}
		lastErr = err
		if !tooFewServers(err) {
			break
		}
	}
	return nil, lastErr
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

func ensure(ctx context.Context, js jetstream.JetStream, replicas int, nodeTTL time.Duration, subjects events.Subjects) (*Buckets, error) {
	cfgs := []jetstream.KeyValueConfig{
		{Bucket: InstancesBucket, Description: "hail registry: <service>.<id> -> InstanceRecord", History: 1, Replicas: replicas},
		{Bucket: NodesBucket, Description: "hail live discovery nodes: <node-id> -> NodeRecord", History: 1, Replicas: replicas,
			TTL: nodeTTL, LimitMarkerTTL: max(nodeTTL, time.Second)},
		{Bucket: ConfigBucket, Description: "hail dynamic config: route.<service> -> RouteConfig", History: 5, Replicas: replicas},
	}
	kvs := make([]jetstream.KeyValue, len(cfgs))
	for i, cfg := range cfgs {
		kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("create or update bucket %s (replicas %d): %w", cfg.Bucket, replicas, err)
		}
		kvs[i] = kv
	}
	ev, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        EventsStream,
		Description: "hail health and node events, for replay",
		Subjects:    []string{subjects.HealthAll(), subjects.NodeEventAll()},
		MaxAge:      EventsMaxAge,
		MaxBytes:    EventsMaxBytes,
		Discard:     jetstream.DiscardOld,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("create or update stream %s (replicas %d): %w", EventsStream, replicas, err)
	}
	return &Buckets{Instances: kvs[0], Nodes: kvs[1], Config: kvs[2], Events: ev, Replicas: replicas}, nil
}
