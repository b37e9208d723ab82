package bus

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Endpoint is one subject a NATS micro service serves.
type Endpoint struct {
	// Name shown by `nats micro info`: [A-Za-z0-9_-]+.
	Name    string
	Subject string
	// Queue group; empty means every subscriber gets every message.
	Queue   string
	Handler nats.MsgHandler
	// PendingBytes bounds what the subscription holds undelivered; 0
	// keeps nats.go's default, -1 is unbounded.
	PendingBytes int
}

// Service is a NATS micro service (so `nats micro ls|info|stats` see it)
// whose endpoints call plain nats.MsgHandlers. Handlers answer by
// publishing to m.Reply: the message they get is a copy not bound to a
// subscription, so m.Respond does not work on it.
type Service struct {
	nc  *nats.Conn
	svc micro.Service
}

// AddService registers cfg with the endpoints; cfg.Version that is not
// SemVer is replaced by 0.0.0 and kept in the metadata as "version", as
// micro requires SemVer and hail does not.
func AddService(nc *nats.Conn, cfg micro.Config, eps []Endpoint) (*Service, error) {
	if !semver.MatchString(cfg.Version) {
		meta := maps.Clone(cfg.Metadata) // the caller's map stays as it was
		if meta == nil {
			meta = map[string]string{}
		}
		meta["version"] = cfg.Version
		cfg.Metadata, cfg.Version = meta, "0.0.0"
	}
	svc, err := micro.AddService(nc, cfg)
	if err != nil {
		return nil, fmt.Errorf("add micro service %s: %w", cfg.Name, err)
	}
	s := &Service{nc: nc, svc: svc}
	for _, e := range eps {
		opts := []micro.EndpointOpt{micro.WithEndpointSubject(e.Subject)}
		if e.Queue == "" {
			opts = append(opts, micro.WithEndpointQueueGroupDisabled())
		} else {
			opts = append(opts, micro.WithEndpointQueueGroup(e.Queue))
		}
		if e.PendingBytes != 0 {
			opts = append(opts, micro.WithEndpointPendingLimits(-1, e.PendingBytes))
		}
		if err := svc.AddEndpoint(e.Name, adapt(e.Handler), opts...); err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("micro service %s: endpoint %s on %s: %w", cfg.Name, e.Name, e.Subject, err)
		}
	}
	return s, nil
}

// adapt hands a micro request to h as the message it came in.
func adapt(h nats.MsgHandler) micro.HandlerFunc {
	return func(r micro.Request) {
		h(&nats.Msg{Subject: r.Subject(), Reply: r.Reply(), Data: r.Data(), Header: nats.Header(r.Headers())})
	}
}

// Close stops the endpoints taking messages; what they already hold is
// still handled, but Close does not wait for it. Safe to call twice.
func (s *Service) Close() error {
	if err := s.svc.Stop(); err != nil {
		return fmt.Errorf("stop micro service %s: %w", s.svc.Info().Name, err)
	}
	return nil
}

// Stop stops the endpoints taking messages and waits, until ctx ends,
// until the handlers have been called for every message they already
// held. Safe to call twice.
func (s *Service) Stop(ctx context.Context) error {
	if s.svc.Stopped() {
		return nil
	}
	// Stop drains the endpoint subscriptions but does not wait for them.
	// A flush after it means the server has seen the unsubscribes, so every
	// message for them is in this client's queues; a barrier runs once
	// every async subscription has delivered what it held before it.
	if err := s.svc.Stop(); err != nil {
		return fmt.Errorf("stop micro service %s: %w", s.svc.Info().Name, err)
	}
	flush := s.nc.Flush
	if _, ok := ctx.Deadline(); ok {
		flush = func() error { return s.nc.FlushWithContext(ctx) }
	}
	if err := flush(); err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) {
			return nil
		}
		return fmt.Errorf("stop micro service %s: flush: %w", s.svc.Info().Name, err)
	}
	done := make(chan struct{})
	if err := s.nc.Barrier(func() { close(done) }); err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) {
			return nil
		}
		return fmt.Errorf("stop micro service %s: %w", s.svc.Info().Name, err)
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop micro service %s: wait for delivered messages: %w", s.svc.Info().Name, ctx.Err())
	}
}

// semver is micro's own rule for versions.
var semver = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// MicroName is a hail service name as a micro service name, which allows
// no dots: com.example.login is com_example_login. The hail name is kept
// in the metadata as "hail_service".
func MicroName(service string) string { return strings.ReplaceAll(service, ".", "_") }
