package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/internal/proctest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// devStack is the dev program running on free loopback ports.
type devStack struct {
	url, http string
	ingress   string // the router's HTTP ingress
	greeterAt string // the example HTTP service
	nc        *nats.Conn
	keys      []string // hail_instances keys of the echo instances
	greeter   string   // the greeter's key (an HTTP service behind the agent)
	proc      *proctest.Process
}

func startDev(t *testing.T) *devStack {
	t.Helper()
	d := &devStack{
		url:       "nats://127.0.0.1:" + strconv.Itoa(bustest.FreePort(t)),
		http:      "127.0.0.1:" + strconv.Itoa(bustest.FreePort(t)),
		ingress:   "127.0.0.1:" + strconv.Itoa(bustest.FreePort(t)),
		greeterAt: "127.0.0.1:" + strconv.Itoa(bustest.FreePort(t)),
	}
	p := start(t, "dev", "dev", map[string]string{"HAIL_LOG_LEVEL": "warn"}, "--nats-url", d.url, "--http-addr", d.http, "--greeter-addr", d.greeterAt, "--ingress-addr", d.ingress, "--consul-addr", "", "--dns-addr", "")
	p.WaitReady(t, d.http)
	d.proc = p
	nc, err := nats.Connect(d.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	d.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 30*time.Second, func() error {
		kv, err := js.KeyValue(t.Context(), "hail_instances")
		if err != nil {
			return err
		}
		keys, err := kv.Keys(t.Context())
		if err != nil {
			return err
		}
		// The dev stack runs 3 echo instances and the greeter behind its
		// agent; keys are the echo ones.
		var echoes, greeters []string
		for _, k := range keys {
			switch {
			case strings.HasPrefix(k, "echo."):
				echoes = append(echoes, k)
			case strings.HasPrefix(k, "greeter."):
				greeters = append(greeters, k)
			}
		}
		if len(echoes) != 3 || len(greeters) != 1 || len(keys) != 4 {
			return fmt.Errorf("instances registered %v, want 3 echo and 1 greeter", keys)
		}
		d.keys, d.greeter = echoes, greeters[0]
		return nil
	})
	return d
}

// cli runs the nats CLI against the stack and returns what it printed
// (stdout and stderr: it writes headers to stderr).
func (d *devStack) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	// The first call builds the CLI: that must not eat the command's time.
	bin := natsCLIPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-s", d.url}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no saved contexts
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (d *devStack) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := d.cli(t, args...)
	if err != nil {
		t.Fatalf("nats %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// instanceOf reads the Hail-Instance header the CLI printed.
func instanceOf(out string) string {
	_, after, ok := strings.Cut(out, "Hail-Instance: ")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(after, "\n")
	return strings.TrimSpace(id)
}

// The commands the issue names, with the real nats CLI pinned in
// tools/go.mod, against `dev` as a user starts it.
func TestNatsCLIAgainstDevStack(t *testing.T) {
	d := startDev(t)

	out := d.mustCLI(t, "kv", "ls", "hail_instances")
	for _, k := range d.keys {
		if !strings.Contains(out, k) {
			t.Errorf("kv ls hail_instances lacks %s:\n%s", k, out)
		}
	}
	// The greeter, registered by the dev stack's agent, shows where it is
	// and how it is checked.
	out = d.mustCLI(t, "kv", "get", "hail_instances", d.greeter, "--raw")
	for _, want := range []string{`"address":"127.0.0.1"`, `"port":`, `"checks":[{"name":"health","kind":"http","status":"passing"`, `"tags":["dev","http"]`} {
		if !strings.Contains(out, want) {
			t.Errorf("kv get %s lacks %s:\n%s", d.greeter, want, out)
		}
	}
	out = d.mustCLI(t, "kv", "get", "hail_instances", d.keys[0], "--raw")
	id := strings.TrimPrefix(d.keys[0], "echo.")
	for _, want := range []string{`"id":"` + id + `"`, `"status":"passing"`, `"service":"echo"`} {
		if !strings.Contains(out, want) {
			t.Errorf("kv get %s lacks %s:\n%s", d.keys[0], want, out)
		}
	}
	out = d.mustCLI(t, "request", "hail.route.echo.say", "hi")
	if !strings.Contains(out, "hi") || instanceOf(out) == "" {
		t.Errorf("routed request: no answer with Hail-Instance:\n%s", out)
	}

	// Routing before and after a hail_config put: weighted spreads one
	// key's requests over the instances, hash keeps them on one.
	spread := func() map[string]int {
		got := map[string]int{}
		for range 9 {
			got[instanceOf(d.mustCLI(t, "request", "-H", "Hail-Key:user-42", "hail.route.echo.say", "hi"))]++
		}
		return got
	}
	if got := spread(); len(got) != 3 {
		t.Errorf("weighted routing sent one key to %d instances, want all 3: %v", len(got), got)
	}
	d.mustCLI(t, "kv", "put", "hail_config", "route.echo", `{"strategy":"hash"}`)
	bustest.Eventually(t, 10*time.Second, func() error {
		if got := spread(); len(got) != 1 {
			return fmt.Errorf("after the put one key went to %d instances: %v", len(got), got)
		}
		return nil
	})

	out = d.mustCLI(t, "micro", "ls")
	for _, svc := range []string{"hail-discovery", "hail-router", "echo"} {
		if !strings.Contains(out, svc) {
			t.Errorf("micro ls lacks %s:\n%s", svc, out)
		}
	}
	out = d.mustCLI(t, "micro", "info", "echo")
	for _, want := range []string{"hail.svc.echo.say", "hail.inst.", "hail_id"} {
		if !strings.Contains(out, want) {
			t.Errorf("micro info echo lacks %s:\n%s", want, out)
		}
	}
	d.mustCLI(t, "micro", "stats", "echo")
}

// Every nats command in the README's sh blocks works as shown, and
// prints what its comment says: the JSON shown (ids and times aside) or
// what natsClaims checks of a description. The agent example's lines
// need the example agent: TestAgentExample runs those.
func TestReadmeNatsCommands(t *testing.T) {
	lines, err := readmeShLines("../README.md", "nats ")
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) < 10 {
		t.Fatalf("found %d nats commands in the README, want the whole list", len(lines))
	}
	d := startDev(t)
	bin := natsCLIPath(t) // built before any command's clock starts
	id := strings.TrimPrefix(d.keys[0], "echo.")
	checked := 0
	for _, l := range lines {
		if agentExampleLine(l) || l.section == regionsSection || adminReadmeLine(l) {
			continue // their own tests run them: the agent example's, two regions', identities'
		}
		line := strings.ReplaceAll(l.cmd, "greeter.<id>", d.greeter)
		args, err := shellWords(strings.ReplaceAll(line, "<id>", id))
		if err != nil {
			t.Errorf("%s: %v", l.cmd, err)
			continue
		}
		args = args[1:] // "nats"
		run := func() (string, error) { return d.cli(t, args...) }
		if streams(args) {
			// Runs until stopped: it must start and print, not fail.
			run = func() (string, error) {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, bin, append([]string{"-s", d.url}, args...)...)
				cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
				out, err := cmd.CombinedOutput()
				var exit *exec.ExitError
				if err != nil && errors.As(err, &exit) && ctx.Err() != nil {
					err = nil
				}
				return string(out), err
			}
		}
		// A claim about the state a command leaves (a route in force)
		// may take moments: the command and its check are tried again.
		var last error
		bustest.Eventually(t, 15*time.Second, func() error {
			out, err := run()
			if err != nil {
				last = fmt.Errorf("%w\n%s", err, out)
				return nil // the command fails: no point trying again
			}
			last = nil
			return checkNatsClaim(t, d, l, out)
		})
		if last != nil {
			t.Errorf("%s: %v", l.cmd, last)
		}
		if l.comment != "" {
			checked++
		}
	}
	if checked < 20 {
		t.Errorf("checked the comments of %d README nats lines; the nats CLI section alone has more", checked)
	}
}

// streams says whether a command runs until stopped.
func streams(args []string) bool {
	return args[0] == "sub" || (len(args) > 1 && args[0] == "kv" && args[1] == "watch")
}

// shellWords splits a command line as sh would for quotes and a trailing
// comment.
func shellWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\'' || c == '"':
			j := strings.IndexByte(line[i+1:], c)
			if j < 0 {
				return nil, fmt.Errorf("unclosed %c", c)
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '#' && !inWord:
			i = len(line)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
