package bus_test

import (
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/bus/embedded"
)

func TestRedactURL(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://s3cret@127.0.0.1:4222", "nats://REDACTED@127.0.0.1:4222"},
		{"nats://user:s3cret@127.0.0.1:4222", "nats://user:REDACTED@127.0.0.1:4222"},
		{"tls://s3cret@a:4222,tls://u:s3cret@b:4222", "tls://REDACTED@a:4222,tls://u:REDACTED@b:4222"},
		// URLs that do not parse keep no secret either.
		{"nats://s3cret@127.0.0.1:port", "nats://REDACTED@127.0.0.1:port"},
		{"nats://u:s3c/ret@host:4222", "nats://u:REDACTED@host:4222"},
		{"nats://u:s3c@ret@host:4222", "nats://u:REDACTED@host:4222"},
		{"s3cret@host:4222", "REDACTED@host:4222"},
	} {
		if got := bus.RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// A token in the NATS URL reaches no log line (waiting, connected,
// disconnected, reconnected) and no error.
func TestTokenURLNeverLogged(t *testing.T) {
	const token = "s3cret-t0ken"
	opts := embedded.ServerOptions{Name: "token", Port: bustest.FreePort(t), StoreDir: t.TempDir(),
		Configure: func(o *server.Options) { o.Authorization = token }}
	url := "nats://" + token + "@" + net.JoinHostPort("127.0.0.1", strconv.Itoa(opts.Port))
	logs := connectThroughRestart(t, opts, url, "connected to NATS", "disconnected from NATS", "reconnected to NATS")
	if strings.Contains(logs.String(), token) {
		t.Errorf("the token is in the log:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "url=nats://REDACTED@127.0.0.1:") {
		t.Errorf("the log does not name the redacted URL:\n%s", logs.String())
	}

	// Nor in the error of a URL that does not parse.
	log := slog.New(slog.NewTextHandler(logs, nil))
	_, err := bus.Connect(t.Context(), bus.ConnectOptions{URL: "nats://" + token + "@127.0.0.1:port", Logger: log})
	if err == nil || strings.Contains(err.Error(), token) {
		t.Errorf("Connect to a bad URL: %v", err)
	}
}
