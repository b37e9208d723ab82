package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
)

// Every curl and dig line of the README's Coming from Consul works as shown against the dev program run
// as the README runs it: curl 2xx or the status its comment names, dig
// NOERROR with an answer, or the status its comment names.
func TestReadmeConsulCommands(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("dig is not installed (Debian's dnsutils); .ci/run installs it")
		}
		t.Skip("dig is not installed (apt-get install dnsutils)")
	}
	// The section alone: the agent's section has curl lines for its own
	// API on the same port.
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Coming from Consul\n")
	if !ok {
		t.Fatal("README has no Coming from Consul section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	file := filepath.Join(t.TempDir(), "section.md")
	if err := os.WriteFile(file, []byte(section), 0o644); err != nil {
		t.Fatal(err)
	}
	curls, err := readmeLines(file, "curl ")
	if err != nil {
		t.Fatal(err)
	}
	digs, err := readmeLines(file, "dig ")
	if err != nil {
		t.Fatal(err)
	}
	free := func() string { return "127.0.0.1:" + strconv.Itoa(bustest.FreePort(t)) }
	httpAt, consulAt, dnsAt := free(), free(), free()
	_, dnsPort, _ := net.SplitHostPort(dnsAt)
	p := start(t, "dev", "dev", map[string]string{"HAIL_LOG_LEVEL": "warn"}, "--nats-url", "nats://"+free(), "--http-addr", httpAt,
		"--greeter-addr", free(), "--ingress-addr", "", "--consul-addr", consulAt, "--dns-addr", dnsAt, "--dns-alt-domain", "consul.")
	p.WaitReady(t, httpAt)

	ran := 0
	for _, line := range curls {
		if !strings.Contains(line, "127.0.0.1:8500") {
			continue
		}
		if runCurlLine(t, line, strings.NewReplacer("127.0.0.1:8500", consulAt), 3, 20*time.Second) {
			ran++
		}
	}
	for _, line := range digs {
		if !strings.Contains(line, "-p 8600") {
			continue
		}
		cmd, comment, _ := strings.Cut(line, " #")
		args, err := shellWords(strings.ReplaceAll(cmd, "-p 8600", "-p "+dnsPort))
		if err != nil {
			t.Errorf("%s: %v", line, err)
			continue
		}
		status := "NOERROR"
		for _, s := range []string{"NXDOMAIN", "REFUSED"} {
			if strings.Contains(comment, s) {
				status = s
			}
		}
		short := strings.Contains(cmd, "+short")
		if short {
			// The status shows only without +short; the answer is what
			// +short prints.
			for i, a := range args {
				if a == "+short" {
					args = append(args[:i:i], args[i+1:]...)
					break
				}
			}
		}
		ran++
		bustest.Eventually(t, 20*time.Second, func() error {
			out, err := exec.CommandContext(t.Context(), dig, append(args[1:], "+tries=1", "+time=5")...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s: %v\n%s", line, err, out)
			}
			if !strings.Contains(string(out), "status: "+status) {
				return fmt.Errorf("%s: not %s:\n%s", line, status, out)
			}
			if status == "NOERROR" && strings.Contains(string(out), "ANSWER: 0,") {
				return fmt.Errorf("%s: no answer:\n%s", line, out)
			}
			return nil
		})
	}
	if ran < 4 {
		t.Errorf("ran %d curl and dig lines of Coming from Consul; it has more", ran)
	}
}
