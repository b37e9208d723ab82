package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
)

// regionsSection is the README's section whose commands need two regions.
const regionsSection = "Regions"

// The README's Regions commands run as shown against `dev --regions
// eu,us`: each nats line works on the region its URL names, and
// hail_remote of the first holds the second's echo instances.
func TestReadmeRegionsCommands(t *testing.T) {
	lines, err := readmeShLines("../README.md", "nats ")
	if err != nil {
		t.Fatal(err)
	}
	var regions []readmeLine
	for _, l := range lines {
		if l.section == regionsSection {
			regions = append(regions, l)
		}
	}
	if len(regions) < 2 {
		t.Fatalf("found %d nats commands in the README's Regions section, want its list", len(regions))
	}
	port := bustest.FreePort(t)
	eu, us := "nats://127.0.0.1:"+strconv.Itoa(port), "nats://127.0.0.1:"+strconv.Itoa(port+1)
	p := start(t, "dev", "dev", map[string]string{"HAIL_LOG_LEVEL": "warn"}, "--regions", "eu,us", "--nats-url", eu)
	bustest.Eventually(t, 60*time.Second, func() error {
		if !strings.Contains(p.Output(), "hail dev stack is up") {
			return fmt.Errorf("not up yet")
		}
		return nil
	})
	bin := natsCLIPath(t)
	for _, l := range regions {
		line := strings.NewReplacer("nats://127.0.0.1:4222", eu, "nats://127.0.0.1:4223", us).Replace(l.cmd)
		args, err := shellWords(line)
		if err != nil {
			t.Fatalf("%s: %v", l.cmd, err)
		}
		var out []byte
		bustest.Eventually(t, 30*time.Second, func() error {
			cmd := exec.Command(bin, args[1:]...)
			cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
			if out, err = cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("%s: %v\n%s", l.cmd, err, out)
			}
			if strings.Contains(l.cmd, "kv ls hail_remote") && !strings.Contains(string(out), "us.echo.") {
				return fmt.Errorf("%s: no us.echo.<id> in\n%s", l.cmd, out)
			}
			if strings.Contains(l.cmd, `"region":"*"`) && !(strings.Contains(string(out), `"region":"us"`) && strings.Contains(string(out), `"region":"eu"`)) {
				return fmt.Errorf("%s: not both regions in\n%s", l.cmd, out)
			}
			return nil
		})
	}
}
