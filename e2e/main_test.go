package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/internal/testlog"
)

// programs are what the Dockerfile builds, by command name.
var programs = []string{"nats", "discovery", "router", "echo", "dev"}

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
		args := []string{"build", "-buildvcs=false", "-o", dir + string(filepath.Separator)}
		for _, p := range programs {
			args = append(args, "./services/"+p)
		}
		cmd := exec.Command("go", args...)
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build programs: %v\n%s", err, out)
			return 1
		}
		bins = dir
		return m.Run()
	}()
	os.Exit(code)
}

// process is one program running for a test.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *testlog.Buffer
	done chan struct{}
	err  error
}

// start runs program with env (HAIL_* from the test's own environment
// left out) and stops it with SIGTERM when the test ends.
func start(t *testing.T, name, program string, env map[string]string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(filepath.Join(bins, program), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HAIL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &process{name: name, cmd: cmd, out: &testlog.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("--- %s output:\n%s", name, p.out.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits for a clean exit; safe twice.
func (p *process) stop(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("%s exited with %v after SIGTERM", p.name, p.err)
		}
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%s did not stop within 20 s of SIGTERM", p.name)
	}
}

// exited fails the check if the process has stopped on its own.
func (p *process) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited: %v\n%s", p.name, p.err, p.out.String())
	default:
		return nil
	}
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

// waitReady polls a program's /readyz until it answers 200.
func waitReady(t *testing.T, p *process, addr string) {
	t.Helper()
	bustest.Eventually(t, 60*time.Second, func() error {
		if err := p.exited(); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := httpGet(ctx, "http://"+addr+"/readyz")
		return err
	})
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
		cmd := exec.Command("go", "build", "-buildvcs=false", "-o", natsCLI.path, "github.com/nats-io/natscli/nats")
		cmd.Dir = "../tools"
		if out, err := cmd.CombinedOutput(); err != nil {
			natsCLI.err = fmt.Errorf("build the nats CLI from tools/go.mod: %v\n%s", err, out)
		}
	})
	if natsCLI.err != nil {
		t.Fatal(natsCLI.err)
	}
	return natsCLI.path
}
