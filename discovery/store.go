package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/events"
)

// kvTimeout bounds one KV operation, so a stalled JetStream cannot stall the
// node's loop for longer than a few heartbeat rounds.
const kvTimeout = 2 * time.Second

// maxParallelWrites bounds the KV writes one batch has in flight: enough
// to hide a replicated stream's round trip, few enough not to swamp it.
const maxParallelWrites = 32

// recordStore does all of a node's KV I/O: records in hail_instances
// (revision-checked) and its own entry in hail_nodes. It holds no state of
// the node's, so its writes may run at once.
type recordStore struct {
	kv  *bus.Buckets
	m   *nodeMetrics
	log *slog.Logger
	// region every record written is in (PROTOCOL v1.5).
	region string
}

// created is the outcome of a create: the new key's revision, or, when the
// key existed already, the stored record and its revision (exists true).
type created struct {
	rev    uint64
	cur    events.InstanceRecord
	exists bool
	err    error
}

// create writes rec as a new key.
func (s recordStore) create(ctx context.Context, rec events.InstanceRecord) created {
	data, err := json.Marshal(rec)
	if err != nil {
		return created{err: fmt.Errorf("encode record: %w", err)}
	}
	kctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	rev, err := s.kv.Instances.Create(kctx, rec.Key(), data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		e, gerr := s.kv.Instances.Get(kctx, rec.Key())
		if gerr != nil {
			s.m.kvErrors.Inc()
			return created{err: fmt.Errorf("read existing record %s: %w", rec.Key(), gerr)}
		}
		cur, derr := events.DecodeInstanceRecord(e.Value())
		if derr == nil && cur.Key() != rec.Key() {
			derr = fmt.Errorf("record for %s stored under key %s", cur.Key(), rec.Key())
		}
		if derr != nil {
			// Garbage under the key (someone's `nats kv put`): the valid
			// announce takes its place, revision-checked.
			s.m.rejected(reasonBadRecord).Inc()
			s.log.Warn("replacing an invalid record with an announced one", "key", rec.Key(), "revision", e.Revision(), "err", derr)
			rev, err := s.kv.Instances.Update(kctx, rec.Key(), data, e.Revision())
			if err != nil {
				s.m.kvErrors.Inc()
				return created{err: fmt.Errorf("replace invalid record %s: %w", rec.Key(), err)}
			}
			s.m.kvWrites("update").Inc()
			return created{rev: rev}
		}
		return created{rev: e.Revision(), cur: cur, exists: true}
	}
	if err != nil {
		s.m.kvErrors.Inc()
		return created{err: fmt.Errorf("create record %s: %w", rec.Key(), err)}
	}
	s.m.kvWrites("create").Inc()
	return created{rev: rev}
}

// createAll runs every record's create at once and returns the outcomes
// in order: a burst of registrations costs about one KV round trip per
// maxParallelWrites records.
func (s recordStore) createAll(ctx context.Context, recs []events.InstanceRecord) []created {
	outs := make([]created, len(recs))
	parallel(len(recs), func(i int) { outs[i] = s.create(ctx, recs[i]) })
	return outs
}

// written is the outcome of a write.
type written struct {
	rec  events.InstanceRecord
	rev  uint64
	gone bool // the key was deleted by someone else
	err  error
}

// write stores rec changed by mutate at revision rev. On a conflict it
// reloads the record and applies mutate once more, so two writers that
// briefly disagree never overwrite each other blindly.
func (s recordStore) write(ctx context.Context, rec events.InstanceRecord, rev uint64, mutate func(*events.InstanceRecord)) written {
	key := rec.Key()
	kctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		next := rec
		mutate(&next)
		next.UpdatedAt = time.Now().UTC()
		next.Region = s.region
		data, err := json.Marshal(next)
		if err != nil {
			return written{err: fmt.Errorf("encode record: %w", err)}
		}
		newRev, err := s.kv.Instances.Update(kctx, key, data, rev)
		if err == nil {
			s.m.kvWrites("update").Inc()
			return written{rec: next, rev: newRev}
		}
		if attempt > 0 || !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			s.m.kvErrors.Inc()
			return written{err: fmt.Errorf("update record %s: %w", key, err)}
		}
		e, gerr := s.kv.Instances.Get(kctx, key)
		if errors.Is(gerr, jetstream.ErrKeyNotFound) {
			return written{gone: true, err: fmt.Errorf("update record %s: it was deleted", key)}
		}
		if gerr != nil {
			s.m.kvErrors.Inc()
			return written{err: fmt.Errorf("reload record %s after conflict: %w", key, gerr)}
		}
		cur, derr := events.DecodeInstanceRecord(e.Value())
		if derr != nil || cur.Key() != key {
			// Someone put garbage over the record: the last good one,
			// changed as intended, goes back over it.
			s.m.rejected(reasonBadRecord).Inc()
			s.log.Warn("replacing an invalid record with the last good one", "key", key, "revision", e.Revision(), "err", derr)
			rev = e.Revision()
			continue
		}
		rec, rev = cur, e.Revision()
	}
}

// writeJob is one record for writeAll to change.
type writeJob struct {
	rec    events.InstanceRecord
	rev    uint64
	mutate func(*events.InstanceRecord)
}

// writeAll runs every job's write at once and returns the outcomes in
// order. A round in which many instances change (a rack fails, a restarted
// node claims its records) costs about one KV round trip per
// maxParallelWrites records instead of one per record.
func (s recordStore) writeAll(ctx context.Context, jobs []writeJob) []written {
	outs := make([]written, len(jobs))
	parallel(len(jobs), func(i int) { outs[i] = s.write(ctx, jobs[i].rec, jobs[i].rev, jobs[i].mutate) })
	return outs
}

// parallel runs f(0..n-1), at most maxParallelWrites at once, and returns
// when all have.
func parallel(n int, f func(int)) {
	sem := make(chan struct{}, maxParallelWrites)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
}

// delete removes key from hail_instances.
func (s recordStore) delete(ctx context.Context, key string) error {
	kctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	if err := s.kv.Instances.Delete(kctx, key); err != nil {
		s.m.kvErrors.Inc()
		return fmt.Errorf("delete record %s: %w", key, err)
	}
	s.m.kvWrites("delete").Inc()
	return nil
}

// putNode writes the node's hail_nodes entry.
func (s recordStore) putNode(ctx context.Context, rec events.NodeRecord) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	if _, err := s.kv.Nodes.Put(ctx, rec.ID, data); err != nil {
		s.m.kvErrors.Inc()
		return fmt.Errorf("put %s %s: %w", bus.NodesBucket, rec.ID, err)
	}
	return nil
}

// deleteNode removes the node's hail_nodes entry as it leaves.
func (s recordStore) deleteNode(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), kvTimeout)
	defer cancel()
	if err := s.kv.Nodes.Delete(ctx, id); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("remove %s %s: %w", bus.NodesBucket, id, err)
	}
	return nil
}
