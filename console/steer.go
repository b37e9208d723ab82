package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/events"
)

// Errors a caller of the steering methods branches on.
var (
	// ErrBadInput: the request is wrong; nothing was written.
	ErrBadInput = errors.New("bad input")
	// ErrNotFound: no such instance is registered.
	ErrNotFound = errors.New("not found")
	// ErrConflict: hail_config changed under every attempt, or holds a
	// value that is not a route config.
	ErrConflict = errors.New("conflict")
)

// SetRoute validates data as a RouteConfig and writes it to hail_config
// route.<service>, as `nats kv put hail_config route.<service>` would. A
// route may be set before its service registers (it takes effect when an
// instance does); Registered tells the caller whether one has.
func (r *Region) SetRoute(ctx context.Context, service string, data []byte) (events.RouteConfig, error) {
	if err := events.ValidateService(service); err != nil {
		r.refused.Inc()
		return events.RouteConfig{}, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	cfg, err := events.DecodeRouteConfig(data)
	if err != nil {
		r.refused.Inc()
		return events.RouteConfig{}, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	value, err := json.Marshal(cfg)
	if err != nil {
		return events.RouteConfig{}, fmt.Errorf("encode route config: %w", err)
	}
	if _, err := r.kv.Config.Put(ctx, events.RouteConfigKey(service), value); err != nil {
		return events.RouteConfig{}, fmt.Errorf("put %s %s: %w", bus.ConfigBucket, events.RouteConfigKey(service), err)
	}
	r.wrote.Inc()
	r.log.Info("route written", "service", service, "strategy", cfg.Strategy)
	return cfg, nil
}

// Registered reports whether any instance of service is registered.
func (r *Region) Registered(service string) bool { return len(r.reg.Service(service)) > 0 }

// DeleteRoute removes service's route: routers go back to their defaults.
func (r *Region) DeleteRoute(ctx context.Context, service string) error {
	if err := events.ValidateService(service); err != nil {
		r.refused.Inc()
		return fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	if err := r.kv.Config.Delete(ctx, events.RouteConfigKey(service)); err != nil {
		return fmt.Errorf("delete %s %s: %w", bus.ConfigBucket, events.RouteConfigKey(service), err)
	}
	r.wrote.Inc()
	r.log.Info("route deleted", "service", service)
	return nil
}

// Drain gives instance id the route weight 0 (drained) or, with drained
// false, takes a route weight of 0 away; an instance that announced weight
// 0 itself is then given the default weight. Written to its service's
// hail_config route with a revision check, so concurrent edits are not
// lost.
func (r *Region) Drain(ctx context.Context, id string, drained bool) (events.RouteConfig, error) {
	if err := events.ValidateID(id); err != nil {
		r.refused.Inc()
		return events.RouteConfig{}, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	rec, found := r.reg.ByID(id)
	if !found {
		return events.RouteConfig{}, fmt.Errorf("%w: no instance %s is registered", ErrNotFound, id)
	}
	return r.updateRoute(ctx, rec.Service, func(c *events.RouteConfig) {
		if c.Weights == nil {
			c.Weights = map[string]int{}
		}
		switch {
		case drained:
			c.Weights[id] = 0
		case rec.Weight == 0:
			c.Weights[id] = events.DefaultWeight
		default:
			delete(c.Weights, id)
		}
		if len(c.Weights) == 0 {
			c.Weights = nil
		}
	})
}

// updateRoute reads service's route, changes it and writes it back if no
// one else wrote it in between, trying again a few times if someone did.
func (r *Region) updateRoute(ctx context.Context, service string, change func(*events.RouteConfig)) (events.RouteConfig, error) {
	key := events.RouteConfigKey(service)
	for range 5 {
		var cfg events.RouteConfig
		var rev uint64
		e, err := r.kv.Config.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return cfg, fmt.Errorf("get %s %s: %w", bus.ConfigBucket, key, err)
		default:
			rev = e.Revision()
			if cfg, err = events.DecodeRouteConfig(e.Value()); err != nil {
				r.refused.Inc()
				return cfg, fmt.Errorf("%w: %s holds a value routers refuse (%v); put a valid one or delete it first", ErrConflict, key, err)
			}
		}
		change(&cfg)
		value, err := json.Marshal(cfg)
		if err != nil {
			return cfg, fmt.Errorf("encode route config: %w", err)
		}
		if string(value) == "{}" {
			// Nothing left to say (the last drain undone): no route at
			// all, so routers' defaults apply and the bucket holds no
			// empty entry.
			if rev != 0 {
				err = r.kv.Config.Delete(ctx, key, jetstream.LastRevision(rev))
			}
			if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				continue
			}
			if err != nil {
				return cfg, fmt.Errorf("delete empty %s %s: %w", bus.ConfigBucket, key, err)
			}
			r.wrote.Inc()
			r.log.Info("route emptied; deleted", "service", service)
			return cfg, nil
		}
		if rev == 0 {
			_, err = r.kv.Config.Create(ctx, key, value)
		} else {
			_, err = r.kv.Config.Update(ctx, key, value, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return cfg, fmt.Errorf("write %s %s: %w", bus.ConfigBucket, key, err)
		}
		r.wrote.Inc()
		r.log.Info("route written", "service", service, "weights", cfg.Weights)
		return cfg, nil
	}
	return events.RouteConfig{}, fmt.Errorf("%w: %s kept changing; try again", ErrConflict, key)
}

// Timeline is an instance's health events from the HAIL_EVENTS stream,
// oldest first, at most the last limit.
func (r *Region) Timeline(ctx context.Context, service, id string, limit int) ([]events.HealthEvent, error) {
	if err := events.ValidateService(service); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	if err := events.ValidateID(id); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	var out []events.HealthEvent
	err := r.readEvents(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{r.cfg.Subjects.Health(service, id)}, DeliverPolicy: jetstream.DeliverAllPolicy}, func(data []byte) {
		if ev, err := events.DecodeHealthEvent(data); err == nil {
			out = append(out, ev)
		}
	})
	if err != nil {
		return nil, err
	}
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}

// readEvents hands f every message of HAIL_EVENTS that cfg selects (its
// subjects may hold wildcards), oldest first.
func (r *Region) readEvents(ctx context.Context, cfg jetstream.OrderedConsumerConfig, f func([]byte)) error {
	subject := strings.Join(cfg.FilterSubjects, ",")
	c, err := r.kv.Events.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("read %s: %w", subject, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return fmt.Errorf("read %s: %w", subject, err)
	}
	for left := info.NumPending; left > 0; {
		batch, err := c.Fetch(int(min(left, 256)), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("read %s: %w", subject, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			f(m.Data())
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("read %s: %w", subject, err)
		}
		if n == 0 {
			return nil
		}
		left -= uint64(n)
	}
	return nil
}
