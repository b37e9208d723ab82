package roles_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/roles"
)

// forms are the subscriptions an attacker holding a role would try for
// one allowed pattern: the pattern itself, a trailing ">", every token
// made "*" or cut off with ">", and every "*" made ">" where it is last.
// nats-server matches a subscription's subject against the allow list
// as if it were a message subject, so a literal ">" or "*" may pass where
// the pattern has "*".
func forms(pattern string) []string {
	tokens := strings.Split(pattern, ".")
	out := []string{pattern, pattern + ".>"}
	for i := range tokens {
		out = append(out, strings.Join(append(slices.Clone(tokens[:i]), ">"), "."))
		star := slices.Clone(tokens)
		star[i] = "*"
		out = append(out, strings.Join(star, "."), strings.Join(star, ".")+".>")
		if i < len(tokens)-1 {
			star[len(star)-1] = ">"
			out = append(out, strings.Join(star, "."))
		}
	}
	// Every "*" a ">" where it is last, the others kept, and all made
	// "*" but the first.
	for i, tok := range tokens {
		if tok == "*" {
			out = append(out, strings.Join(append(slices.Clone(tokens[:i]), ">"), "."))
		}
	}
	all := slices.Clone(tokens)
	for i := 1; i < len(all); i++ {
		all[i] = "*"
	}
	out = append(out, strings.Join(all, "."), strings.Join(all[:len(all)-1], ".")+".>")
	// A ">" that is not last makes no subscription at all.
	return slices.DeleteFunc(out, func(s string) bool { i := strings.Index(s, ">"); return i >= 0 && i < len(s)-1 })
}

// probe is a subject a pattern names: "*" made one token, ">" two, and
// with deeper a token more.
func probe(pattern string, deeper bool) string {
	var tokens []string
	for _, tok := range strings.Split(pattern, ".") {
		switch tok {
		case "*":
			tokens = append(tokens, "p1")
		case ">":
			tokens = append(tokens, "p1", "p2")
		default:
			tokens = append(tokens, tok)
		}
	}
	if deeper {
		tokens = append(tokens, "deep")
	}
	return strings.Join(tokens, ".")
}

// mayHear is whether r's allow list, read as NATS reads a message's
// subject ("*" one token, ">" one or more), lets subject through: the
// rights the table means to give.
func mayHear(r roles.Role, subject string) bool {
	return slices.ContainsFunc(r.Subscribe, func(p string) bool { return server.SubjectMatchesFilter(subject, p) })
}

// For every role of a region, every subscription form derived from every
// pattern it may subscribe (and the bare ">", hail.>, _INBOX.>, the other
// roles' inboxes) is tried; then the subjects every role of the region
// may hear, and a token deeper, are published: nothing outside a role's
// rights reaches it (not another service's scoped heartbeats or
// requests, nor those of echo.admin, whose name extends echo's), and each
// pattern it may subscribe still hears all it names.
func TestEverySubscriptionFormConfined(t *testing.T) {
	table := []roles.Role{roles.Discovery(subjects), roles.Router(subjects), roles.Console(subjects), roles.Caller(subjects),
		roles.Service(subjects, "echo"), roles.Service(subjects, "echo.admin"), roles.Service(subjects, "greeter"),
		roles.ServiceUnscoped(subjects, "legacy"), roles.ServiceUnscoped(subjects, "legacy.admin")}
	prober := roles.Role{Name: "prober", Publish: []string{">"}, Subscribe: []string{">"}}
	s := secured(t, append(slices.Clone(table), prober)...)
	p := connectAs(t, s, prober)

	var probes []string
	for _, r := range table {
		for _, pattern := range r.Subscribe {
			probes = append(probes, probe(pattern, false), probe(pattern, true))
		}
	}
	// The unscoped and scoped subjects of one instance of each service,
	// as instances use them.
	for _, svc := range []string{"echo", "echo.admin", "greeter", "legacy"} {
		probes = append(probes, subjects.HeartbeatOf(svc, "0b7c7f1e-5d4f-4f0a-9a55-1c1b5c0c6d11", true),
			subjects.InstOf(svc, "0b7c7f1e-5d4f-4f0a-9a55-1c1b5c0c6d11", "say", true), subjects.Svc(svc, "say"))
	}
	probes = append(probes, subjects.Heartbeat("0b7c7f1e-5d4f-4f0a-9a55-1c1b5c0c6d11"), subjects.Inst("0b7c7f1e-5d4f-4f0a-9a55-1c1b5c0c6d11", "say"))
	// The servers' own advisories ($SYS.>, PROTOCOL v1.4) are published
	// by no user of hail's account (every one is denied $SYS.> and only
	// the system account's import delivers them): the detect tests try
	// them, a forged one included.
	probes = slices.DeleteFunc(probes, func(s string) bool { return strings.HasPrefix(s, "$SYS.") })
	slices.Sort(probes)
	probes = slices.Compact(probes)

	for _, r := range table {
		t.Run(r.Name, func(t *testing.T) {
			a := connectAs(t, s, r)
			tries := []string{">", "*", "*.>", "hail.>", "hail.*", "hail.*.>", "_INBOX.>", "_INBOX.*.>", "$SRV.>", "$JS.>", "$KV.>"}
			for _, other := range table {
				tries = append(tries, other.InboxPrefix()+".>")
			}
			for _, pattern := range r.Subscribe {
				tries = append(tries, forms(pattern)...)
			}
			slices.Sort(tries)
			tries = slices.Compact(tries)
			heard := make(chan *nats.Msg, len(probes)*(len(tries)+1))
			for _, subject := range tries {
				if _, err := a.nc.ChanSubscribe(subject, heard); err != nil {
					t.Fatalf("subscribe %s: %v", subject, err)
				}
			}
			done := r.InboxPrefix() + ".forms-done"
			if _, err := a.nc.ChanSubscribe(done, heard); err != nil {
				t.Fatal(err)
			}
			if err := a.nc.Flush(); err != nil {
				t.Fatal(err)
			}
			for _, subject := range probes {
				if err := p.nc.Publish(subject, []byte(subject)); err != nil {
					t.Fatal(err)
				}
			}
			// One publisher's messages reach one connection in order, and
			// its subscriptions' channel in the order they arrived: once
			// done is there, every probe delivered is.
			if err := p.nc.Publish(done, nil); err != nil {
				t.Fatal(err)
			}
			got := map[string]map[string]bool{} // subscription -> subjects
			deadline := time.After(30 * time.Second)
			for finished := false; !finished; {
				select {
				case m := <-heard:
					if m.Subject == done {
						finished = true
						continue
					}
					if !mayHear(r, m.Subject) {
						t.Errorf("%s heard %s through its subscription %s", r.Name, m.Subject, m.Sub.Subject)
					}
					if got[m.Sub.Subject] == nil {
						got[m.Sub.Subject] = map[string]bool{}
					}
					got[m.Sub.Subject][m.Subject] = true
				case <-deadline:
					t.Fatal("the probes' end never arrived")
				}
			}
			for _, pattern := range r.Subscribe {
				for _, subject := range probes {
					if server.SubjectMatchesFilter(subject, pattern) && !got[pattern][subject] {
						t.Errorf("%s's subscription %s did not hear %s", r.Name, pattern, subject)
					}
				}
			}
			for _, v := range a.count() {
				for _, pattern := range r.Subscribe {
					if strings.Contains(v, fmt.Sprintf("%q", pattern)) {
						t.Errorf("%s refused its own pattern: %s", r.Name, v)
					}
				}
			}
		})
	}
}
