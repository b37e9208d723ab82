package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/hailsd/hail/internal/proctest"
)

// programs are what the Dockerfile builds, by command name.
var programs = []string{"nats", "discovery", "router", "echo", "dev", "agent", "greeter"}

// bins holds the programs built once for every test here.
var bins string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hail-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		pkgs := make([]string, len(programs))
		for i, p := range programs {
			pkgs[i] = "./services/" + p
		}
		if err := proctest.Build("..", dir+string(filepath.Separator), pkgs...); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		bins = dir
		return m.Run()
	}()
	os.Exit(code)
}

// start runs one of the programs TestMain built; see proctest.Start.
func start(t testing.TB, name, program string, env map[string]string, args ...string) *proctest.Process {
	t.Helper()
	return proctest.Start(t, name, filepath.Join(bins, program), env, args...)
}

// httpGet returns the body of a 200 answer.
func httpGet(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, b.String())
	}
	return b.String(), nil
}

// promLine is one sample line of the Prometheus text format.
var promLine = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*(\{(\s*[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*"\s*,?)*\})? (-?[0-9.]+([eE][-+]?[0-9]+)?|NaN|[+-]Inf)( -?[0-9]+)?$`)

// checkProm fails unless text is valid Prometheus text holding every name.
func checkProm(text string, names ...string) error {
	seen := map[string]bool{}
	for i, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !promLine.MatchString(line) {
			return fmt.Errorf("line %d is not Prometheus text: %q", i+1, line)
		}
		name := line[:strings.IndexAny(line, "{ ")]
		seen[name] = true
	}
	var missing []string
	for _, n := range names {
		if !seen[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("metrics missing: %s", strings.Join(missing, ", "))
	}
	return nil
}

// sample is the value of one series in Prometheus text, or -1.
func sample(text, series string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	return -1
}

var natsCLI struct {
	once sync.Once
	path string
	err  error
}

// natsCLIPath builds the nats CLI pinned in tools/go.mod, once.
func natsCLIPath(t *testing.T) string {
	t.Helper()
	natsCLI.once.Do(func() {
		natsCLI.path = filepath.Join(bins, "nats-cli")
		if err := proctest.Build("../tools", natsCLI.path, "github.com/nats-io/natscli/nats"); err != nil {
			natsCLI.err = fmt.Errorf("build the nats CLI from tools/go.mod: %w", err)
		}
	})
	if natsCLI.err != nil {
		t.Fatal(natsCLI.err)
	}
	return natsCLI.path
}
