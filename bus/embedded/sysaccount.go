package embedded

import (
	"fmt"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/hailsd/hail/events"
)

// The accounts of a server hail starts without an auth file (PROTOCOL
// v1.4): the system account SYS exports the servers' disconnect
// advisories, hail's account HAIL imports them without renaming (so
// discovery hears $SYS.ACCOUNT.*.DISCONNECT), keeps JetStream (hail's
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
    exports: [{stream: %[4]q, accounts: [%[2]s]}]
  }
  %[2]s: {
    jetstream: enabled
    imports: [{stream: {account: %[1]s, subject: %[4]q}}]
    users: [{user: %[3]s, permissions: {publish: {deny: [%[5]q]}}}]
  }
}
`, SystemAccount, HailAccount, NoAuthUser, events.DisconnectAll, events.SysPublish)

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
