package config

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNATSValidate(t *testing.T) {
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		n    NATS
		bad  string // part of the error; "" when valid
	}{
		{"url only", NATS{URL: DefaultNATSURL}, ""},
		{"user and password", NATS{URL: DefaultNATSURL, User: "svc", Password: "pw"}, ""},
		{"user and password file", NATS{URL: DefaultNATSURL, User: "svc", PasswordFile: file}, ""},
		{"token file", NATS{URL: DefaultNATSURL, TokenFile: file}, ""},
		{"password without user", NATS{URL: DefaultNATSURL, Password: "pw"}, "nats.user"},
		{"two ways", NATS{URL: DefaultNATSURL, User: "svc", Token: "t"}, "choose one"},
		{"password twice", NATS{URL: DefaultNATSURL, User: "svc", Password: "pw", PasswordFile: file}, "nats.password_file"},
		{"missing CA file", NATS{URL: DefaultNATSURL, TLS: NATSTLS{CA: "/nonexistent/ca.pem"}}, "nats.tls.ca"},
		{"cert without key", NATS{URL: DefaultNATSURL, TLS: NATSTLS{Cert: file}}, "go together"},
		{"inbox wildcard", NATS{URL: DefaultNATSURL, InboxPrefix: "_INBOX.>"}, "nats.inbox_prefix"},
		{"bad url keeps its password out of the error", NATS{URL: "http://bob:hunter2@x"}, "REDACTED"},
		{"unparsable url keeps its token out of the error", NATS{URL: "nats://hunter2@x:port"}, "REDACTED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.n.Validate()
			if tt.bad == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tt.bad != "" && (err == nil || !strings.Contains(err.Error(), tt.bad)) {
				t.Fatalf("error %v, want one saying %q", err, tt.bad)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
	// HostPort's error, too.
	if _, err := (NATS{URL: "nats://hunter2@x:port"}).HostPort(); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("HostPort of an unparsable URL: %v", err)
	}
	n := NATS{URL: DefaultNATSURL, User: "svc", PasswordFile: file, InboxPrefix: "_INBOX.svc-echo"}
	opts, err := n.Options()
	if err != nil || len(opts) != 2 {
		t.Errorf("options %d, %v", len(opts), err)
	}
}

type secretProgram struct {
	NATS NATS `koanf:"nats"`
	Log  Log  `koanf:"log"`
}

func (p *secretProgram) Logging() Log { return p.Log }

func TestPrintRedactsSecrets(t *testing.T) {
	cfg := &secretProgram{NATS: NATS{URL: "nats://bob:hunter2@127.0.0.1:4222,nats://tok3n@127.0.0.1:4223", User: "bob", Password: "hunter2", Token: "tok3n"}, Log: DefaultLog}
	var out bytes.Buffer
	if err := Print(&out, cfg); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); strings.Contains(s, "hunter2") || strings.Contains(s, "tok3n") || !strings.Contains(s, "REDACTED") || !strings.Contains(s, "user: bob") {
		t.Errorf("printed:\n%s", s)
	}
}

type listedCheck struct {
	HTTP   string              `koanf:"http"`
	Header map[string][]string `koanf:"header"`
}

type listedService struct {
	Name   string        `koanf:"name"`
	Token  string        `koanf:"token"`
	Checks []listedCheck `koanf:"checks"`
}

type listProgram struct {
	Services []listedService `koanf:"services"`
	Log      Log             `koanf:"log"`
}

func (p *listProgram) Logging() Log { return p.Log }

// Secrets in lists of sections (an agent's services and their checks)
// print redacted too: secret headers, a URL's user information, a token;
// what is no secret prints as it is.
func TestPrintRedactsSecretsInLists(t *testing.T) {
	cfg := &listProgram{Log: DefaultLog, Services: []listedService{{Name: "web", Token: "s-t0k3n", Checks: []listedCheck{{
		HTTP: "https://bob:hunter2@web.example/health",
		Header: map[string][]string{"Authorization": {"Bearer b34rer"}, "Proxy-Authorization": {"Basic pr0xy"}, "Cookie": {"session=c00kie"},
			"X-Consul-Token": {"c0nsul"}, "X-Api-Key": {"ap1key"}, "X-Client-Secret": {"cl13nt"}, "Accept": {"text/plain"}},
	}}}}}
	var out bytes.Buffer
	if err := Print(&out, cfg); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, secret := range []string{"hunter2", "s-t0k3n", "b34rer", "pr0xy", "c00kie", "c0nsul", "ap1key", "cl13nt"} {
		if strings.Contains(s, secret) {
			t.Errorf("printed %q:\n%s", secret, s)
		}
	}
	for _, kept := range []string{"text/plain", "Authorization:", "web.example/health", "name: web"} {
		if !strings.Contains(s, kept) {
			t.Errorf("did not print %q:\n%s", kept, s)
		}
	}
}
