package roles

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/hailsd/hail/events"
)

// AuthConf renders rs as a nats-server configuration (an accounts block
// for `include` or services/nats's auth.file): one account, HAIL, with
// JetStream, and one user per role with its permissions. hashed are the
// users' passwords as stored (bcrypt), by role name. With it come the
// system account and the import of the disconnect advisories into HAIL
// (sysAccount), and every user is denied publish on $SYS.
func AuthConf(rs []Role, hashed map[string]string) (string, error) {
	var b strings.Builder
	b.WriteString("# hail's roles, generated from package roles by `services/nats secure init`.\n")
	b.WriteString("# Edit the table in code, not this file.\n")
	b.WriteString("system_account: SYS\naccounts: {\n" + sysAccount + "  HAIL: {\n    jetstream: enabled\n" + sysImport + "    users: [\n")
	for _, r := range rs {
		pw, ok := hashed[r.Name]
		if !ok {
			return "", fmt.Errorf("no password for role %s", r.Name)
		}
		fmt.Fprintf(&b, "      {user: %s, password: %s, permissions: {\n", strconv.Quote(r.Name), strconv.Quote(pw))
		fmt.Fprintf(&b, "        publish: {allow: [%s], deny: [%s]}\n", quoted(r.Publish), strconv.Quote(events.SysPublish))
		if len(r.DenySubscribe) > 0 {
			fmt.Fprintf(&b, "        subscribe: {allow: [%s], deny: [%s]}\n", quoted(r.Subscribe), quoted(r.DenySubscribe))
		} else {
			fmt.Fprintf(&b, "        subscribe: {allow: [%s]}\n", quoted(r.Subscribe))
		}
		if r.AllowResponses {
			b.WriteString("        allow_responses: true\n")
		}
		b.WriteString("      }}\n")
	}
	b.WriteString("    ]\n  }\n}\n")
	return b.String(), nil
}

// sysAccount is the system account, exporting the servers' disconnect and
// connect advisories and their shutdown and lame duck events to HAIL, and
// sysImport HAIL's import of them, not renamed (PROTOCOL v1.4).
var sysAccount, sysImport = func() (string, string) {
	var exports, imports []string
	for _, s := range events.ServerEvents {
		exports = append(exports, fmt.Sprintf("{stream: %q, accounts: [HAIL]}", s))
		imports = append(imports, fmt.Sprintf("{stream: {account: SYS, subject: %q}}", s))
	}
	return "  SYS: {\n    exports: [" + strings.Join(exports, ", ") + "]\n  }\n",
		"    imports: [" + strings.Join(imports, ", ") + "]\n"
}()

func quoted(subjects []string) string {
	q := make([]string, len(subjects))
	for i, s := range subjects {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}
