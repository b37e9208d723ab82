package bus

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Probe tells whether the registry can be read now: the connection is up
// and the stream behind hail_instances answered within a second at the
// last probe. A stream without a leader does not answer (a leader that has
// lost its peers answers until it steps down, some seconds later). Probes
// are cheap (one STREAM.INFO), and /readyz reads the answer without
// waiting for one.
type Probe struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	interval time.Duration
	ok       atomic.Bool
}

// NewProbe makes a probe that Run keeps current every interval.
func NewProbe(nc *nats.Conn, interval time.Duration) (*Probe, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &Probe{nc: nc, js: js, interval: interval}, nil
}

// Run probes at once and then every interval until ctx ends.
func (p *Probe) Run(ctx context.Context) error {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := p.js.Stream(pctx, "KV_"+InstancesBucket)
		cancel()
		p.ok.Store(err == nil)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Reachable reports the last probe's answer, and false while the
// connection is down.
func (p *Probe) Reachable() bool { return p.ok.Load() && p.nc.IsConnected() }
