package discovery

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestReplyRule(t *testing.T) {
	const id = "0190f1b6-5c3a-7d2e-9f10-1234567890ab"
	secured := replyRule{own: []string{"_INBOX.discovery.", "_INBOX.discovery.nuid.hbRand12."}}
	// Without an inbox prefix, the heartbeat tracker's inbox is the
	// node's own; its connection's request inboxes are not (a console on
	// the same connection asks queries from them).
	open := replyRule{own: []string{"_INBOX.OwnNuidOwnNuidOwnNu.hbRand12."}}
	tests := []struct {
		name     string
		rule     replyRule
		kind     requestKind
		reply    string
		service  string
		identity string
		want     string
	}{
		{"no reply", secured, kindAnnounce, "", "echo", "", ""},
		{"not an inbox", secured, kindAnnounce, "hail.health.echo.x", "echo", "", reasonReplyTo},
		{"not an inbox, query", secured, kindQuery, "hail.route.echo.say", "", "", reasonReplyTo},
		{"own service's inbox", secured, kindAnnounce, "_INBOX.svc-echo.abc.def", "echo", "", ""},
		{"own service's inbox, deregister", secured, kindDeregister, "_INBOX.svc-echo.abc.def", "echo", "", ""},
		{"another service's inbox", secured, kindAnnounce, "_INBOX.svc-greeter.abc.def", "echo", "", reasonForeignReply},
		{"a longer service's inbox", secured, kindAnnounce, "_INBOX.svc-echo2.abc", "echo", "", reasonForeignReply},
		{"the router's inbox", secured, kindAnnounce, "_INBOX.router.nuid.rand.5", "echo", "", reasonForeignReply},
		{"the node's own inbox", secured, kindAnnounce, "_INBOX.discovery.nuid.rand.7.0.k", "echo", "", reasonForeignReply},
		{"another node's inbox", open, kindDeregister, "_INBOX.discovery.nuid.x", "echo", "", reasonForeignReply},
		{"the console's inbox", secured, kindAnnounce, "_INBOX.console.x", "echo", "", reasonForeignReply},
		{"the caller's inbox", secured, kindDeregister, "_INBOX.caller.x", "echo", "", reasonForeignReply},
		{"admin announces nothing", secured, kindAnnounce, "_INBOX.admin.x", "echo", "", reasonForeignReply},
		{"admin deregisters", secured, kindDeregister, "_INBOX.admin.x", "echo", "", ""},
		{"an identity's inbox, before identities", secured, kindAnnounce, "_INBOX." + id + ".x", "echo", "", reasonForeignReply},
		{"an identity's own inbox", secured, kindAnnounce, "_INBOX." + id + ".x", "echo", id, ""},
		{"another identity's inbox", secured, kindAnnounce, "_INBOX." + id + ".x", "echo", "0190f1b6-5c3a-7d2e-9f10-ba0987654321", reasonForeignReply},
		{"a default inbox", open, kindAnnounce, "_INBOX.SomeoneElsesNuidXyz.abc", "echo", "", ""},
		{"the node's own heartbeat inbox", open, kindDeregister, "_INBOX.OwnNuidOwnNuidOwnNu.hbRand12.3.1.key", "echo", "", reasonForeignReply},
		{"the node's own heartbeat inbox itself", open, kindAnnounce, "_INBOX.OwnNuidOwnNuidOwnNu.hbRand12", "echo", "", reasonForeignReply},
		{"a request inbox of the node's connection", open, kindAnnounce, "_INBOX.OwnNuidOwnNuidOwnNu.tok", "echo", "", ""},
		{"query from a caller", secured, kindQuery, "_INBOX.caller.x.y", "", "", ""},
		{"query from the console", secured, kindQuery, "_INBOX.console.x.y", "", "", ""},
		{"query from admin", secured, kindQuery, "_INBOX.admin.x.y", "", "", ""},
		{"query from a default inbox", open, kindQuery, "_INBOX.SomeoneElsesNuidXyz.abc", "", "", ""},
		{"query into the router", secured, kindQuery, "_INBOX.router.x.y", "", "", reasonForeignReply},
		{"query into discovery", open, kindQuery, "_INBOX.discovery.x.y", "", "", reasonForeignReply},
		{"query into the node's heartbeat inbox", open, kindQuery, "_INBOX.OwnNuidOwnNuidOwnNu.hbRand12.4.0.k", "", "", reasonForeignReply},
		{"query from a console on the node's connection", open, kindQuery, "_INBOX.OwnNuidOwnNuidOwnNu.rttInbox", "", "", ""},
		{"query into a custom inbox prefix of the node", replyRule{own: []string{"_INBOX.mine."}}, kindQuery, "_INBOX.mine.x", "", "", reasonForeignReply},
		{"query into a service's inbox", secured, kindQuery, "_INBOX.svc-echo.x", "", "", reasonForeignReply},
		{"query into an identity's inbox", secured, kindQuery, "_INBOX." + id + ".x", "", "", reasonForeignReply},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.rule.answers(tt.kind, tt.reply, tt.service, tt.identity); got != tt.want {
				t.Errorf("answers(%q for %q) = %q, want %q", tt.reply, tt.service, got, tt.want)
			}
		})
	}
}

// A flood of refusals makes one line per reason every quietEvery, and the
// next line says how many were kept quiet.
func TestQuietLogBounded(t *testing.T) {
	var out bytes.Buffer
	q := newQuietLog(slog.New(slog.NewTextHandler(&out, nil)))
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	q.now = func() time.Time { return now }
	for range 1000 {
		q.log(slog.LevelWarn, reasonInvalid, "rejected message", "err", "x")
		q.log(slog.LevelWarn, reasonForeignReply, "ignoring", "reply", "y")
	}
	if got := strings.Count(out.String(), "\n"); got != 2 {
		t.Fatalf("%d lines for 2,000 refusals of 2 reasons, want 2:\n%s", got, out.String())
	}
	now = now.Add(quietEvery)
	q.log(slog.LevelWarn, reasonInvalid, "rejected message", "err", "x")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if last := lines[len(lines)-1]; len(lines) != 3 || !strings.Contains(last, "suppressed=999") || !strings.Contains(last, "reason=invalid") {
		t.Errorf("after %v:\n%s", quietEvery, out.String())
	}
}
