package credentials_test

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/hailsd/hail/credentials"
)

// Into a directory that was there, with files whose modes let others
// read them, Write and a kept set (Ensure) alike leave the directory 0700,
// the certificates 0644 and everything else 0600.
func TestModesOnEveryFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secure")
	o := credentials.Options{Services: []string{"echo"}, Hosts: []string{"127.0.0.1"}, HashCost: bcrypt.MinCost}
	d, err := credentials.Write(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 10 {
		t.Fatalf("only %d files written", len(files))
	}
	for _, tt := range []struct {
		name string
		do   func() error
	}{
		{"write", func() error { _, err := credentials.Write(dir, o); return err }},
		{"kept", func() error {
			if _, kept, err := credentials.Ensure(dir, o); err != nil || !kept {
				t.Fatalf("Ensure: kept %v, %v", kept, err)
			}
			return nil
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, f := range files {
				if err := os.Chmod(d.File(f.Name()), 0o666); err != nil {
					t.Fatal(err)
				}
			}
			if err := tt.do(); err != nil {
				t.Fatal(err)
			}
			if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
				t.Errorf("the directory: %v %v, want 0700", st.Mode(), err)
			}
			for _, f := range files {
				want := os.FileMode(0o600)
				if f.Name() == credentials.CAFile || f.Name() == credentials.ServerCertFile {
					want = 0o644
				}
				st, err := os.Stat(d.File(f.Name()))
				if err != nil {
					t.Fatal(err)
				}
				if st.Mode().Perm() != want {
					t.Errorf("%s is %v, want %v", f.Name(), st.Mode().Perm(), want)
				}
			}
		})
	}
}

// svc-<S> hears only its service's scoped subjects unless the service is
// one of Unscoped; each .env says how the service's instances announce
// (HAIL_SCOPED, which services/echo reads); an unscoped service that is
// not one of the services is refused.
func TestServiceUsers(t *testing.T) {
	dir := t.TempDir()
	if _, err := credentials.Write(dir, credentials.Options{Services: []string{"echo", "greeter"}, Unscoped: []string{"greeter"}, HashCost: bcrypt.MinCost}); err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(filepath.Join(dir, credentials.AuthConfFile))
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]string{}
	for _, block := range strings.Split(string(conf), "{user: ")[1:] {
		name, rest, _ := strings.Cut(block, ",")
		users[name] = rest
	}
	for _, tt := range []struct {
		user, scoped string
		has, hasNot  []string
	}{
		{"svc-echo", "true", []string{`"hail.hb.echo.*"`, `"hail.inst.echo.*.*"`, `deny: [`, `"hail.hb.echo.*.>"`}, []string{`"hail.hb.*"`, `"hail.inst.*.*"`}},
		{"svc-greeter", "false", []string{`"hail.hb.*"`, `"hail.inst.*.*"`, `"hail.hb.*.>"`, `"hail.inst.*.*.>"`}, []string{`"hail.hb.greeter.*"`}},
	} {
		block := users[strconv.Quote(tt.user)]
		for _, s := range tt.has {
			if !strings.Contains(block, s) {
				t.Errorf("%s's permissions lack %s: %s", tt.user, s, block)
			}
		}
		for _, s := range tt.hasNot {
			if strings.Contains(block, s) {
				t.Errorf("%s's permissions hold %s: %s", tt.user, s, block)
			}
		}
		if got := env(t, filepath.Join(dir, tt.user+".env"))["HAIL_SCOPED"]; got != tt.scoped {
			t.Errorf("%s.env: HAIL_SCOPED=%s, want %s", tt.user, got, tt.scoped)
		}
	}
	for name, o := range map[string]credentials.Options{
		"an unscoped service that is not one of the services": {Services: []string{"echo"}, Unscoped: []string{"greeter"}},
		"a hash cost beyond bcrypt's":                         {Services: []string{"echo"}, HashCost: 40},
	} {
		if _, err := credentials.Write(t.TempDir(), o); err == nil {
			t.Errorf("%s was taken", name)
		}
	}
}

func env(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			out[k] = v
		}
	}
	return out
}

// A kept set takes the role table as it is now (here: svc-echo made
// scoped) with the passwords and the CA it had, so a region that keeps
// its credentials across an upgrade gets the new permissions.
func TestKeptSetFollowsTheTable(t *testing.T) {
	dir := t.TempDir()
	o := credentials.Options{Services: []string{"echo"}, Unscoped: []string{"echo"}, HashCost: bcrypt.MinCost}
	if _, err := credentials.Write(dir, o); err != nil {
		t.Fatal(err)
	}
	before := env(t, filepath.Join(dir, "svc-echo.env"))
	ca, _ := os.ReadFile(filepath.Join(dir, credentials.CAFile))
	o.Unscoped = nil
	d, kept, err := credentials.Ensure(dir, o)
	if err != nil || !kept {
		t.Fatalf("Ensure: kept %v, %v", kept, err)
	}
	after := env(t, filepath.Join(dir, "svc-echo.env"))
	if after["HAIL_NATS_PASSWORD"] != before["HAIL_NATS_PASSWORD"] || after["HAIL_SCOPED"] != "true" {
		t.Errorf("svc-echo.env was %v, is %v: want the password kept and HAIL_SCOPED=true", before, after)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, credentials.CAFile)); string(again) != string(ca) {
		t.Error("the CA changed")
	}
	conf, err := os.ReadFile(d.File(credentials.AuthConfFile))
	if err != nil {
		t.Fatal(err)
	}
	block := strings.Split(string(conf), `{user: "svc-echo"`)[1]
	if !strings.Contains(block, `"hail.hb.echo.*.>"`) || strings.Contains(block, `"hail.hb.*"`) {
		t.Errorf("svc-echo's kept permissions: %s", block)
	}
	// The password still passes the hash auth.conf holds.
	hash := strings.Split(strings.Split(block, `password: "`)[1], `"`)[0]
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(after["HAIL_NATS_PASSWORD"])); err != nil {
		t.Errorf("the kept hash does not take the kept password: %v", err)
	}
}
