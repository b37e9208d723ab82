package callout

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/credentials"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/roles"
)

// InProcess is the callout of a set that credentials.Write wrote with
// Identities into a directory, read and ready to serve a server it runs
// in (Start).
type InProcess struct {
	c        *Callout
	user, pw string
	log      *slog.Logger
}

// NewInProcess reads the callout's files from dir (the issuer's key, the
// services' secrets, the callout user's password).
func NewInProcess(dir string, log *slog.Logger) (*InProcess, error) {
	ids, err := credentials.ReadIdentities(dir)
	if err != nil {
		return nil, fmt.Errorf("auth callout: %w", err)
	}
	user := roles.CalloutUser()
	pw, err := os.ReadFile(filepath.Join(dir, user.Name+".password"))
	if err != nil {
		return nil, fmt.Errorf("auth callout: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c, err := New(Config{Issuer: ids.Issuer, Account: roles.Account, Secrets: ids.Secrets, Subjects: events.Subjects{}, Log: log.With("component", "auth-callout")})
	if err != nil {
		return nil, err
	}
	return &InProcess{c: c, user: user.Name, pw: strings.TrimSpace(string(pw)), log: log}, nil
}

// Start serves srv on an in-process connection, whose auth file is the
// set's auth.conf; stop ends it. It may run while srv still starts
// (embedded.ServerOptions.BeforeClients), so that the callout listens
// before the first client can connect.
func (p *InProcess) Start(srv *server.Server) (stop func(), err error) {
	// In process: no TLS and no port, and gone with the server; it
	// reconnects for ever, as the server it serves is the one it is in.
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.UserInfo(p.user, p.pw), nats.Name("hail-auth-callout"),
		nats.MaxReconnects(-1), nats.CustomInboxPrefix(roles.CalloutUser().InboxPrefix()))
	if err != nil {
		return nil, fmt.Errorf("auth callout: connect: %w", err)
	}
	if _, err := p.c.Serve(nc); err != nil {
		nc.Close()
		return nil, err
	}
	p.log.Info("auth callout serving", "services", len(p.c.secrets))
	return nc.Close, nil
}

// StartInProcess is NewInProcess(dir, log) started on srv, a server
// already running.
func StartInProcess(srv *server.Server, dir string, log *slog.Logger) (stop func(), err error) {
	p, err := NewInProcess(dir, log)
	if err != nil {
		return nil, err
	}
	return p.Start(srv)
}
