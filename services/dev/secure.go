package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/credentials"
	"github.com/hailsd/hail/events"
)

// secureDir keeps the credentials of an earlier secured run in dir, so
// that a caller's flags stay good across runs, or writes new ones.
func secureDir(dir, host string) (*credentials.Dir, error) {
	// Every instance of the secured stack announces scoped, as the
	// services' users (scoped-only) need.
	// The passwords are random (no brute force reaches them at any bcrypt
	// cost), and the stack connects a dozen users at once at start: at
	// cost 11 each costs the server 0.1 s of CPU, seconds under the race
	// detector, so the dev region's own hashes take the lowest cost.
	d, _, err := credentials.Ensure(dir, credentials.Options{Services: []string{"echo", "greeter"}, Hosts: []string{"127.0.0.1", "localhost", host}, HashCost: credentials.MinHashCost})
	if err != nil {
		return nil, fmt.Errorf("secure: %w", err)
	}
	return d, nil
}

// dialer connects the stack's parts to its server: as one user each, by
// role, when the stack is secured.
type dialer struct {
	url   string
	creds *credentials.Dir // nil: open
	log   *slog.Logger
}

func (d dialer) connect(ctx context.Context, name, role string) (*nats.Conn, error) {
	o := bus.ConnectOptions{URL: d.url, Name: name, Logger: d.log}
	if d.creds != nil {
		var err error
		if o.Extra, err = d.creds.Options(role); err != nil {
			return nil, err
		}
		// The server checks a bcrypt hash per connection: on a busy machine
		// (or under the race detector) that and the TLS handshake outlast
		// nats.go's 2 s, and every retry pays for both again.
		o.Extra = append(o.Extra, nats.Timeout(20*time.Second))
	}
	return bus.Connect(ctx, o)
}

// printSecured tells how to reach the secured stack as a caller, and the
// console (at consoleAt, if served) with its token; the password and the
// token stay in their files (0600), read by the shell, not printed.
func printSecured(w io.Writer, url, consoleAt string, d *credentials.Dir) {
	u, _ := d.User("caller")
	env := d.File(u.Name + ".env")
	flags := fmt.Sprintf(`-s %s --tlsca %s --user %s --password "$(sed -n 's/^HAIL_NATS_PASSWORD=//p' %s)" --inbox-prefix %s`,
		strings.Replace(url, "nats://", "tls://", 1), d.File(credentials.CAFile), u.Name, env, u.InboxPrefix)
	s := events.Subjects{}
	fmt.Fprintf(w, `
Secured: TLS, and each part its own NATS user with least privilege (docs/PROTOCOL.md, roles).
Credentials (one <user>.env per user, auth.conf for the server) are in %s.
As the caller, with the nats CLI (go -C tools tool nats ...):
  nats %[2]s request %[3]s hi
  nats %[2]s request %[4]s '{"service":"echo"}'
The caller may route and query, nothing else; the other users' .env files (console.env reads
the buckets and hears events) are for the programs that run as them.
`, d.Path, flags, s.Route("echo", "say"), s.DiscoveryInstances())
	if consoleAt != "" {
		tok := d.File(credentials.ConsoleTokenFile)
		fmt.Fprintf(w, `The console asks for the token in %[1]s (write scope; console.tokens holds its hash):
  log in at http://%[2]s/login with it, or
  curl -H "Authorization: Bearer $(cat %[1]s)" http://%[2]s/api/services
`, tok, consoleAt)
	}
}
