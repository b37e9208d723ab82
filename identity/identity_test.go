package identity_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/nats-io/nkeys"

	"github.com/hailsd/hail/identity"
)

// The id is UUIDv5(hail's namespace, "nkey:"+pub), as PROTOCOL v1.6
// writes it, and a saved seed gives the same id back.
func TestIDDerivedFromTheKeyAndKept(t *testing.T) {
	i, err := identity.New()
	if err != nil {
		t.Fatal(err)
	}
	want := uuid.NewSHA1(uuid.NewSHA1(uuid.NameSpaceURL, []byte("hail")), []byte("nkey:"+i.PublicKey())).String()
	if i.ID() != want {
		t.Errorf("id %s, want %s", i.ID(), want)
	}
	if u := uuid.MustParse(i.ID()); u.Version() != 5 {
		t.Errorf("id %s is not a UUIDv5", i.ID())
	}
	seed := filepath.Join(t.TempDir(), "echo.nk")
	if err := i.Save(seed); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(seed); st.Mode().Perm() != 0o600 {
		t.Errorf("seed file mode %v, want 0600", st.Mode().Perm())
	}
	back, err := identity.Load(seed)
	if err != nil {
		t.Fatal(err)
	}
	if back.ID() != i.ID() || back.PublicKey() != i.PublicKey() {
		t.Errorf("loaded %s, saved %s", back.ID(), i.ID())
	}
	if other, _ := identity.New(); other.ID() == i.ID() {
		t.Error("two keys, one id")
	}
}

// A file that is not a user seed is refused, and the error does not
// quote it.
func TestLoadRefusesWhatIsNotASeed(t *testing.T) {
	account, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	accountSeed, _ := account.Seed()
	dir := t.TempDir()
	for name, text := range map[string]string{
		"garbage":      "SUsecret-looking-garbage",
		"account seed": string(accountSeed),
		"empty":        "",
	} {
		p := filepath.Join(dir, "seed")
		if err := os.WriteFile(p, []byte(text+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := identity.Load(p)
		if err == nil {
			t.Errorf("%s: loaded", name)
		} else if text != "" && strings.Contains(err.Error(), text) {
			t.Errorf("%s: the error quotes the file: %v", name, err)
		}
	}
	if _, err := identity.Load(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file loaded")
	}
}
