package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A service that imports hail's SDK gets hail's runtime dependencies in
// its module graph and nothing of hail's tools or browser tests: minimum
// version selection would otherwise raise the service's own modules to
// whatever those pull in.
func TestSDKModuleGraphIsLean(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("main.go", `package main

import "github.com/hailsd/hail/instance"

func main() { _ = instance.Config{} }
`)
	write("go.mod", "module example.com/consumer\n\ngo 1.26.8\n\nrequire github.com/hailsd/hail v0.0.0\n\nreplace github.com/hailsd/hail => "+root+"\n")
	gocmd := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), "go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	gocmd("mod", "tidy")
	mods := strings.Fields(gocmd("list", "-m", "-f", "{{.Path}}", "all"))
	for _, m := range mods {
		for _, bad := range []string{"github.com/aws/", "cloud.google.com/", "go.opentelemetry.io/", "github.com/chromedp/", "github.com/go-task/"} {
			if strings.HasPrefix(m, bad) {
				t.Errorf("module %s in an SDK user's module graph", m)
			}
		}
	}
	if len(mods) > 60 {
		t.Errorf("%d modules in an SDK user's module graph; 38 when this test was written", len(mods))
	}
	t.Logf("%d modules in the graph of a one-file consumer of instance", len(mods))
}
