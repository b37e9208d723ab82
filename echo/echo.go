// Package echo is hail's example service: "say" answers with what it was
// sent, "slow" waits the given number of milliseconds first, which makes
// draining and timeouts easy to watch.
package echo

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/instance"
	"github.com/nats-io/nats.go"
)

// MaxSlow bounds how long "slow" may be asked to wait.
const MaxSlow = time.Minute

// Start makes an instance of the echo service on nc, with its endpoints,
// and starts it.
func Start(ctx context.Context, nc *nats.Conn, cfg instance.Config) (*instance.Instance, error) {
	inst, err := instance.New(nc, cfg)
	if err != nil {
		return nil, err
	}
	if err := Register(inst); err != nil {
		return nil, err
	}
	if err := inst.Start(ctx); err != nil {
		return nil, err
	}
	return inst, nil
}

// Register adds the endpoints to inst.
func Register(inst *instance.Instance) error {
	if err := inst.Handle("say", Say); err != nil {
		return err
	}
	return inst.Handle("slow", Slow)
}

// Say replies with the request's payload.
func Say(_ context.Context, m *nats.Msg) ([]byte, error) { return m.Data, nil }

// Slow waits the milliseconds given as the payload (a decimal integer),
// then replies with the payload.
func Slow(ctx context.Context, m *nats.Msg) ([]byte, error) {
	text := strings.TrimSpace(string(m.Data))
	ms, err := strconv.Atoi(text)
	if err != nil || ms < 0 || time.Duration(ms)*time.Millisecond > MaxSlow {
		return nil, &instance.Error{Code: events.CodeBadRequest,
			Message: "slow: payload must be a whole number of milliseconds from 0 to " + strconv.Itoa(int(MaxSlow.Milliseconds()))}
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return m.Data, nil
	case <-ctx.Done():
		return nil, &instance.Error{Code: events.CodeUnavailable, Message: "slow: instance shutting down"}
	}
}
