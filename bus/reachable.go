package bus

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Reachable reports whether the registry can be read now: the connection
// is up and the stream behind hail_instances answered within a second at
// the last probe, made every interval until ctx ends. A stream without a
// leader does not answer (a leader that has lost its peers answers until
// it steps down, some seconds later). Probes are cheap (one STREAM.INFO),
// and /readyz reads the answer without waiting for one.
func Reachable(ctx context.Context, nc *nats.Conn, interval time.Duration) func() bool {
	var ok atomic.Bool
	js, err := jetstream.New(nc)
	if err != nil {
		return ok.Load
	}
	probe := func() {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := js.Stream(pctx, "KV_"+InstancesBucket)
		ok.Store(err == nil)
	}
	probe()
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				probe()
			}
		}
	}()
	return func() bool { return ok.Load() && nc.IsConnected() }
}
