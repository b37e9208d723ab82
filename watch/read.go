package watch

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Read is a snapshot of the keys of kv that match filter (a subject
// filter of the bucket's keys, "region.>" say), each at its revision, for
// a question asked once (a region query) rather than followed. It ends at
// the snapshot's end; a watch that closes before it is an error, as
// nothing here would make it again.
func Read(ctx context.Context, kv jetstream.KeyValue, filter string) ([]Entry, error) {
	kw, err := kv.Watch(ctx, filter, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", kv.Bucket(), err)
	}
	defer func() { _ = kw.Stop() }()
	var out []Entry
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("read %s: %w", kv.Bucket(), ctx.Err())
		case e, ok := <-kw.Updates():
			if !ok {
				return nil, fmt.Errorf("read %s: the watch closed before its snapshot ended", kv.Bucket())
			}
			if e == nil {
				return out, nil
			}
			out = append(out, Entry{Key: e.Key(), Value: e.Value(), Rev: e.Revision()})
		}
	}
}
