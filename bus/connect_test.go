package bus_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/bus/embedded"
	"github.com/hailsd/hail/internal/testlog"
)

// A program started before its NATS server waits for it (as in a compose
// stack), and once connected logs every disconnect and reconnect.
func TestConnectWaitsAndLogsReconnects(t *testing.T) {
	opts := embedded.ServerOptions{Name: "later", Port: bustest.FreePort(t), StoreDir: t.TempDir()}
	url := "nats://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(opts.Port))
	connectThroughRestart(t, opts, url, "disconnected from NATS", "reconnected to NATS")
}

// connectThroughRestart connects to url before the server of opts is up,
// starts it, restarts it once, and waits until the log holds every one of
// wants. It returns the log.
func connectThroughRestart(t *testing.T, opts embedded.ServerOptions, url string, wants ...string) *testlog.Buffer {
	t.Helper()
	var logs testlog.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	connected := make(chan error, 1)
	go func() {
		nc, err := bus.Connect(t.Context(), bus.ConnectOptions{URL: url, Name: "test", Logger: log})
		if err == nil {
			t.Cleanup(nc.Close)
		}
		connected <- err
	}()
	bustest.Eventually(t, 5*time.Second, func() error {
		if !strings.Contains(logs.String(), "waiting for NATS") {
			return errors.New("not waiting yet")
		}
		return nil
	})
	s, err := embedded.StartServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-connected:
		if err != nil {
			t.Fatalf("Connect: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Connect did not return once the server was up")
	}
	s.Shutdown()
	s.WaitForShutdown()
	if s, err = embedded.StartServer(opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	bustest.Eventually(t, 10*time.Second, func() error {
		for _, want := range wants {
			if !strings.Contains(logs.String(), want) {
				return errors.New("log lacks " + want)
			}
		}
		return nil
	})
	return &logs
}

func TestConnectGivesUpWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := bus.Connect(ctx, bus.ConnectOptions{URL: "nats://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(bustest.FreePort(t)))})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want the context's deadline", err)
	}
}
