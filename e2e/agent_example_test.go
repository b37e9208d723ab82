package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
)

// agentSection is the README section whose first sh block runs the agent
// with deploy/agent.yaml beside the dev stack.
const agentSection = "Services beside the bus: the agent"

// agentExampleLine says whether a README line is one of that block's,
// which need the example agent running (TestAgentExample runs them).
func agentExampleLine(l readmeLine) bool { return l.section == agentSection && l.block == 0 }

// deploy/agent.yaml, run beside the dev stack as the README's agent
// section says, registers web with every check passing once its TTL check
// is reported; each line of that section's first block does what its
// comment says.
func TestAgentExample(t *testing.T) {
	d := startDev(t)
	api := "127.0.0.1:" + strconv.Itoa(bustest.FreePort(t))
	file := exampleAgentConfig(t, d, api)
	// Its DNS and its data beside the test's, not on the defaults a
	// developer's own agent or dev stack may hold (127.0.0.1:8600,
	// ~/.local/state/hail-agent).
	env := map[string]string{"HAIL_DNS_ADDR": "127.0.0.1:" + strconv.Itoa(bustest.FreePort(t)), "HAIL_DATA_DIR": t.TempDir()}
	p := start(t, "agent", "agent", env, "--config", file)
	p.WaitReady(t, api)

	curls, err := readmeShLines("../README.md", "curl ")
	if err != nil {
		t.Fatal(err)
	}
	natsLines, err := readmeShLines("../README.md", "nats ")
	if err != nil {
		t.Fatal(err)
	}
	var lines []readmeLine
	for _, l := range append(curls, natsLines...) {
		if agentExampleLine(l) {
			lines = append(lines, l)
		}
	}
	if len(lines) < 4 {
		t.Fatalf("found %d lines in the README's agent example, want its curl and nats lines", len(lines))
	}
	// The block's own order: the TTL report comes after the first look.
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	at := func(l readmeLine) int { return strings.Index(string(readme), l.cmd) }
	for i := 1; i < len(lines); i++ {
		for j := i; j > 0 && at(lines[j]) < at(lines[j-1]); j-- {
			lines[j], lines[j-1] = lines[j-1], lines[j]
		}
	}
	ran := map[string]bool{}
	for _, l := range lines {
		if l.comment == "" {
			t.Errorf("%s: no comment saying what it prints", l.cmd)
			continue
		}
		ran[strings.Fields(l.cmd)[0]] = true
		bustest.Eventually(t, 15*time.Second, func() error {
			out, err := runExampleLine(t, d, api, l.cmd)
			if err != nil {
				return err
			}
			return agentClaim(l, out, api)
		})
	}
	if !ran["curl"] || !ran["nats"] {
		t.Errorf("ran %v of the agent example's lines, want curl and nats ones", ran)
	}
}

// exampleAgentConfig is deploy/agent.yaml with the dev stack's addresses
// in place of the defaults it names.
func exampleAgentConfig(t *testing.T, d *devStack, api string) string {
	t.Helper()
	data, err := os.ReadFile("../deploy/agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer(
		"nats://127.0.0.1:4222", d.url,
		"127.0.0.1:8090", d.greeterAt,
		"127.0.0.1:8501", api,
		"127.0.0.1:8601", "127.0.0.1:"+strconv.Itoa(bustest.FreePort(t)),
	).Replace(string(data))
	for _, want := range []string{d.url, d.greeterAt, api} {
		if !strings.Contains(text, want) {
			t.Fatalf("deploy/agent.yaml does not name the dev stack's address that %s stands for", want)
		}
	}
	file := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// runExampleLine runs a curl or nats line of the README against the stack
// and returns the answer's body.
func runExampleLine(t *testing.T, d *devStack, api, cmd string) (string, error) {
	args, err := shellWords(strings.ReplaceAll(cmd, "127.0.0.1:8501", api))
	if err != nil {
		return "", err
	}
	switch args[0] {
	case "curl":
		req, err := curlRequest(args[1:])
		if err != nil {
			return "", err
		}
		resp, err := http.DefaultClient.Do(req())
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			return "", fmt.Errorf("%s: %d %s", cmd, resp.StatusCode, body)
		}
		return string(body), err
	case "nats":
		out, err := d.cli(t, args[1:]...)
		if err != nil {
			return "", fmt.Errorf("%s: %w\n%s", cmd, err, out)
		}
		_, body := natsReply(out)
		return body, nil
	}
	return "", fmt.Errorf("%s: neither curl nor nats", cmd)
}

// agentClaim checks what a line of the agent example prints against its
// comment.
func agentClaim(l readmeLine, out, api string) error {
	switch {
	case literalOutput(l.comment):
		return matchGolden(l.comment, out)
	case strings.Contains(l.comment, "every check of web passing"):
		// The report's own answer is the TTL check; the claim is about all.
		body, err := httpGet(context.Background(), "http://"+api+"/v1/checks")
		if err != nil {
			return err
		}
		var checks map[string][]events.CheckResult
		if err := json.Unmarshal([]byte(body), &checks); err != nil {
			return err
		}
		if len(checks["web"]) < 4 {
			return fmt.Errorf("web has %d checks, deploy/agent.yaml names 4: %s", len(checks["web"]), body)
		}
		for _, c := range checks["web"] {
			if c.Status != events.Passing {
				return fmt.Errorf("check %s is %s (%s), want every check passing", c.Name, c.Status, c.Output)
			}
		}
		return nil
	case strings.Contains(l.comment, "web's record"):
		var recs []events.InstanceRecord
		if err := json.Unmarshal([]byte(out), &recs); err != nil {
			return fmt.Errorf("%s: %w: %s", l.cmd, err, out)
		}
		if len(recs) != 1 || recs[0].Service != "web" {
			return fmt.Errorf("%s: %s, want web's record alone", l.cmd, out)
		}
		return nil
	case strings.HasPrefix(l.comment, "the bridge: "):
		if want := strings.TrimPrefix(l.comment, "the bridge: "); strings.TrimSpace(out) != want {
			return fmt.Errorf("%s: %q, want %q", l.cmd, out, want)
		}
		return nil
	}
	return fmt.Errorf("%s: no check for the README's comment %q: add one to agentClaim", l.cmd, l.comment)
}
