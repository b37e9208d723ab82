package credentials_test

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/hailsd/hail/credentials"
)

// A set with identities has a secret per service and no svc-<S> users,
// the callout's password at bcrypt's lowest cost whatever the others',
// and Ensure keeps it (the same secrets and issuer) rather than writing a
// new one, which would lock out every instance.
func TestIdentitiesKept(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secure")
	o := credentials.Options{Services: []string{"echo", "greeter"}, Hosts: []string{"127.0.0.1"}, HashCost: credentials.MinHashCost + 1, Identities: true}
	d, err := credentials.Write(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.User("svc-echo"); ok {
		t.Error("a shared svc-echo user with identities")
	}
	if _, ok := d.User("admin"); !ok {
		t.Error("no admin user")
	}
	conf, err := os.ReadFile(d.File(credentials.AuthConfFile))
	if err != nil {
		t.Fatal(err)
	}
	for user, cost := range map[string]int{"callout": credentials.MinHashCost, "discovery": credentials.MinHashCost + 1} {
		m := regexp.MustCompile(`user: "` + user + `", password: "([^"]+)"`).FindSubmatch(conf)
		if m == nil {
			t.Fatalf("no user %s in auth.conf", user)
		}
		if got, err := bcrypt.Cost(m[1]); err != nil || got != cost {
			t.Errorf("%s's password hashed at cost %d (%v), want %d", user, got, err, cost)
		}
	}
	before, err := credentials.ReadIdentities(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(before.Secrets) != 2 || before.Secrets["echo"] == "" || before.Secrets["echo"] == before.Secrets["greeter"] {
		t.Fatalf("secrets of %d services, echo's empty or greeter's", len(before.Secrets))
	}
	_, kept, err := credentials.Ensure(dir, o)
	if err != nil || !kept {
		t.Fatalf("Ensure: kept %v, %v", kept, err)
	}
	after, err := credentials.ReadIdentities(dir)
	if err != nil {
		t.Fatal(err)
	}
	bp, _ := before.Issuer.PublicKey()
	ap, _ := after.Issuer.PublicKey()
	if bp != ap || after.Secrets["echo"] != before.Secrets["echo"] {
		t.Error("Ensure replaced the issuer or a secret")
	}
	// A service added gets a secret; the others keep theirs.
	o.Services = append(o.Services, "third")
	if _, kept, err := credentials.Ensure(dir, o); err != nil || !kept {
		t.Fatalf("Ensure with a new service: kept %v, %v", kept, err)
	}
	added, err := credentials.ReadIdentities(dir)
	if err != nil {
		t.Fatal(err)
	}
	if added.Secrets["third"] == "" || added.Secrets["echo"] != before.Secrets["echo"] {
		t.Error("a service added got no secret, or echo's changed")
	}
}

// KindOf reads a set's kind from its files, also when the set is cut
// short (a file removed, or one written before a file was part of a set):
// keeping such a set must not make it the other kind.
func TestKindOf(t *testing.T) {
	write := func(identities bool, remove ...string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			o := credentials.Options{Services: []string{"echo"}, Hosts: []string{"127.0.0.1"}, HashCost: credentials.MinHashCost, Identities: identities}
			if _, err := credentials.Write(dir, o); err != nil {
				t.Fatal(err)
			}
			for _, f := range remove {
				if err := os.Remove(filepath.Join(dir, f)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for _, tt := range []struct {
		name string
		make func(t *testing.T, dir string)
		want credentials.Kind
	}{
		{"not there", func(*testing.T, string) {}, credentials.NoSet},
		{"empty", func(t *testing.T, dir string) { mkdir(t, dir) }, credentials.NoSet},
		{"other files", func(t *testing.T, dir string) {
			mkdir(t, dir)
			if err := os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, credentials.NoSet},
		{"shared users", write(false), credentials.SharedUsers},
		{"shared users without console.tokens", write(false, credentials.ConsoleTokensFile), credentials.SharedUsers},
		{"shared users without auth.conf", write(false, credentials.AuthConfFile), credentials.SharedUsers},
		{"identities", write(true), credentials.IdentitySet},
		{"identities without auth.conf", write(true, credentials.AuthConfFile), credentials.IdentitySet},
		{"identities without the issuer", write(true, credentials.CalloutIssuerFile), credentials.IdentitySet},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "secure")
			tt.make(t, dir)
			got, err := credentials.KindOf(dir)
			if err != nil || got != tt.want {
				t.Errorf("KindOf: %v (%v), want %v", got, err, tt.want)
			}
		})
	}
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
}
