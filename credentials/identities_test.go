package credentials_test

import (
	"path/filepath"
	"testing"

	"github.com/hailsd/hail/credentials"
)

// A set with identities has a secret per service and no svc-<S> users,
// and Ensure keeps it (the same secrets and issuer) rather than writing a
// new one, which would lock out every instance.
func TestIdentitiesKept(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secure")
	o := credentials.Options{Services: []string{"echo", "greeter"}, Hosts: []string{"127.0.0.1"}, HashCost: credentials.MinHashCost, Identities: true}
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
