package embedded

import (
	"fmt"
	"strings"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/hailsd/hail/events"
)

// The accounts of a server hail starts without an auth file (PROTOCOL
// v1.4): the system account SYS exports the servers' disconnect and
// connect advisories and their shutdown and lame duck events, hail's
// account HAIL imports them without renaming (so discovery hears
// $SYS.ACCOUNT.*.DISCONNECT and .CONNECT), keeps JetStream (hail's
// buckets live there), and takes every client that brings no credentials
// (no_auth_user). The import alone would let a client of HAIL publish a
// forged advisory on the imported subject, so its one user may publish
// nothing under $SYS.
const (
	SystemAccount = "SYS"
	HailAccount   = "HAIL"
	// NoAuthUser is the user of HAIL a client without credentials is.
	NoAuthUser = "hail"
)

var defaultAccounts = fmt.Sprintf(`
system_account: %[1]s
no_auth_user: %[3]s
accounts: {
  %[1]s: {
    exports: [%[4]s]
  }
  %[2]s: {
    jetstream: enabled
    imports: [%[5]s]
    users: [{user: %[3]s, permissions: {publish: {deny: [%[6]q]}}}]
  }
}
`, SystemAccount, HailAccount, NoAuthUser, sysExports(), sysImports(), events.SysPublish)

// sysExports and sysImports are the export of every server event of
// events.ServerEvents from SYS to HAIL, and HAIL's imports of them, not
// renamed: the disconnect advisories, the connect advisories (an
// identity's live connections, PROTOCOL v1.6), and a server's shutdown
// and lame duck (discovery holds the judgement of its clients' silence
// while they reconnect).
func sysExports() string {
	return eachServerEvent(func(s string) string { return fmt.Sprintf("{stream: %q, accounts: [%s]}", s, HailAccount) })
}

func sysImports() string {
	return eachServerEvent(func(s string) string {
		return fmt.Sprintf("{stream: {account: %s, subject: %q}}", SystemAccount, s)
	})
}

// eachServerEvent joins one entry per subject of events.ServerEvents.
func eachServerEvent(entry func(subject string) string) string {
	parts := make([]string, len(events.ServerEvents))
	for i, s := range events.ServerEvents {
		parts[i] = entry(s)
	}
	return strings.Join(parts, ", ")
}

// withDefaultAccounts gives o hail's accounts when nothing else says who
// may connect (no users, accounts or auth of its own).
func withDefaultAccounts(o *server.Options) error {
	if len(o.Accounts) > 0 || len(o.Users) > 0 || len(o.Nkeys) > 0 || o.Username != "" || o.Authorization != "" ||
		o.NoAuthUser != "" || o.SystemAccount != "" || o.CustomClientAuthentication != nil || o.TrustedOperators != nil {
		return nil
	}
	var d server.Options
	if err := d.ProcessConfigString(defaultAccounts); err != nil {
		return fmt.Errorf("hail's default accounts: %w", err)
	}
	o.Accounts, o.Users, o.NoAuthUser, o.SystemAccount = d.Accounts, d.Users, d.NoAuthUser, d.SystemAccount
	return nil
}
