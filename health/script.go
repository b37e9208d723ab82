//go:build unix

package health

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/hailsd/hail/events"
)

// Script runs a command, without a shell, as Consul's args checks do:
// exit 0 is passing, 1 warning, anything else critical; so is the timeout,
// on which the command's whole process group is killed (a shell script's
// children too). Standard output and error are captured together, up to
// MaxOutput bytes.
type Script struct{ Args []string }

// Probe runs the command once under ctx.
func (s Script) Probe(ctx context.Context) Result {
	if len(s.Args) == 0 {
		return result(events.Critical, "no command")
	}
	cmd := exec.Command(s.Args[0], s.Args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &capped{max: MaxOutput}
	cmd.Stdout, cmd.Stderr = out, out
	// Output pipes a killed group's stray child might still hold open
	// must not hold the check up.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return result(events.Critical, fmt.Sprintf("start %s: %v", s.Args[0], err))
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return result(events.Critical, fmt.Sprintf("%s: timed out (%v); killed\n%s", s.Args[0], context.Cause(ctx), out.String()))
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return result(events.Passing, out.String())
	case errors.As(err, &exit) && exit.ExitCode() == 1:
		return result(events.Warning, out.String())
	default:
		return result(events.Critical, fmt.Sprintf("%s: %v\n%s", s.Args[0], err, out.String()))
	}
}

// capped keeps the first max bytes written to it and drops the rest (a
// chatty check must not fill memory). Both of a command's streams write
// to it, from two goroutines.
type capped struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.buf)
}
