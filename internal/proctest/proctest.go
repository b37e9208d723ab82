// Package proctest runs hail's programs for tests: as the binaries an
// operator runs (built with go build, configured by environment and flags,
// stopped with SIGTERM), or in process through their run function.
package proctest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/internal/testlog"
)

// Build runs go build in dir for pkgs, writing to out (a file for one
// package, a directory ending in a separator for several). VCS stamping is
// off: a test's checkout may be no git work tree.
func Build(dir, out string, pkgs ...string) error {
	cmd := exec.Command("go", append([]string{"build", "-buildvcs=false", "-o", out}, pkgs...)...)
	cmd.Dir = dir
	if text, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", strings.Join(pkgs, " "), err, text)
	}
	return nil
}

// StopWithin bounds how long a program may take to stop after SIGTERM.
const StopWithin = 20 * time.Second

// Process is one program running for a test.
type Process struct {
	name string
	cmd  *exec.Cmd
	out  *testlog.Buffer
	done chan struct{}
	err  error
}

// Start runs bin with the test's environment, less any HAIL_* variable,
// plus env. When the test ends the program is stopped (Stop) and, if the
// test failed, its output logged.
func Start(t testing.TB, name, bin string, env map[string]string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HAIL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &Process{name: name, cmd: cmd, out: &testlog.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop(t)
		if t.Failed() {
			t.Logf("--- %s output:\n%s", name, p.Output())
		}
	})
	return p
}

// Stop sends SIGTERM and fails the test unless the program exits cleanly
// within StopWithin. A program already gone is left as it is.
func (p *Process) Stop(t testing.TB) {
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
	case <-time.After(StopWithin):
		p.Kill()
		t.Errorf("%s did not stop within %v of SIGTERM", p.name, StopWithin)
	}
}

// Kill ends the program at once, as a crash would, and waits for it.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Exited is an error, with the program's output, once it has stopped.
func (p *Process) Exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited: %v\n%s", p.name, p.err, p.Output())
	default:
		return nil
	}
}

// WaitReady waits until the process answers 200 on http://addr/readyz,
// polling; the test fails when the process exits first or a minute passes.
func (p *Process) WaitReady(t testing.TB, addr string) {
	t.Helper()
	bustest.Eventually(t, time.Minute, func() error {
		if err := p.Exited(); err != nil {
			return err
		}
		return ready(addr)
	})
}

func ready(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s", resp.Status)
	}
	return nil
}

// PID is the program's process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Output is what the program has written to stdout and stderr so far.
func (p *Process) Output() string { return p.out.String() }

// Go runs a program's run function in process until the test ends; then
// its context is cancelled and an error it returns fails the test.
func Go(t testing.TB, run func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
}
