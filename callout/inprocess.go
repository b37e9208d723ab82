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

// StartInProcess runs the callout of a set that credentials.Write wrote
// with Identities into dir (the issuer's key, the services' secrets, the
// callout user's password) on its own in-process connection to srv,
// whose auth file is the set's auth.conf. stop ends it.
func StartInProcess(srv *server.Server, dir string, log *slog.Logger) (stop func(), err error) {
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
	// In process: no TLS and no port, and gone with the server; it
	// reconnects for ever, as the server it serves is the one it is in.
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.UserInfo(user.Name, strings.TrimSpace(string(pw))), nats.Name("hail-auth-callout"),
		nats.MaxReconnects(-1), nats.CustomInboxPrefix(user.InboxPrefix()))
	if err != nil {
		return nil, fmt.Errorf("auth callout: connect: %w", err)
	}
	if _, err := c.Serve(nc); err != nil {
		nc.Close()
		return nil, err
	}
	log.Info("auth callout serving", "services", len(ids.Secrets))
	return nc.Close, nil
}
