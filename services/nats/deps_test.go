package main

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The NATS server links neither the console nor html/template: `secure
// init` writes the console's token hash with roles.HashToken, not the
// console's code.
func TestServerLinksNoConsole(t *testing.T) {
	cmd := exec.CommandContext(t.Context(), "go", "list", "-deps", ".")
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/hailsd/hail/roles") {
		t.Fatalf("go list -deps lists no roles: %d packages, not this program's list", len(deps))
	}
	for _, bad := range []string{"github.com/hailsd/hail/console", "html/template"} {
		if slices.Contains(deps, bad) {
			t.Errorf("services/nats depends on %s", bad)
		}
	}
}
