package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
	"go.yaml.in/yaml/v3"

	"github.com/hailsd/hail/events"
)

// The "Two commands" section: `go run ./services/dev` runs what its
// comment and the text below it say, on the addresses they name.
func TestReadmeTwoCommands(t *testing.T) {
	lines, err := readmeShLines("../README.md", "go run ./services/dev ")
	if err != nil {
		t.Fatal(err)
	}
	var dev *readmeLine
	for i, l := range lines {
		if l.section == "Two commands" && l.cmd == "go run ./services/dev" {
			dev = &lines[i]
		}
	}
	// The comment this test checks, word for word: change both together.
	const claim = "embedded NATS + JetStream on 127.0.0.1:4222, a discovery node, a router, 3 echo instances, the greeter"
	if dev == nil || dev.comment != claim {
		t.Fatalf("the README's Two commands block: %+v, want go run ./services/dev with the comment %q", dev, claim)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	// The addresses the section names are the dev stack's defaults.
	out, err := exec.Command(filepath.Join(bins, "dev"), "--print-config").CombinedOutput()
	if err != nil {
		t.Fatalf("dev --print-config: %v\n%s", err, out)
	}
	var cfg struct {
		Discovery int `yaml:"discovery"`
		Echo      int `yaml:"echo"`
		NATS      struct {
			URL string `yaml:"url"`
		} `yaml:"nats"`
		HTTP    struct{ Addr string } `yaml:"http"`
		Greeter struct{ Addr string } `yaml:"greeter"`
		Ingress struct{ Addr string } `yaml:"ingress"`
	}
	if err := yaml.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.NATS.URL != "nats://127.0.0.1:4222" || cfg.Discovery != 1 || cfg.Echo != 3 || cfg.Greeter.Addr == "" {
		t.Errorf("dev's defaults %+v, the README says NATS on 127.0.0.1:4222, one discovery node, 3 echo instances, the greeter", cfg)
	}
	section := strings.Join(strings.Fields(readmeSection(t, string(readme), "Two commands")), " ")
	if want := "<http://" + cfg.HTTP.Addr + "/>"; !strings.Contains(section, "console (the operator's page), its API and the metrics on "+want) {
		t.Errorf("Two commands does not say the console is on %s", want)
	}
	// What it runs, as its welcome says.
	d := startDev(t)
	welcome := d.proc.Output()
	for _, want := range []string{"discovery   1 node(s)", "router      hail.route.>", `echo        3 instances of service "echo"`, "greeter     an HTTP service", "NATS        " + d.url} {
		if !strings.Contains(welcome, want) {
			t.Errorf("the dev stack's welcome lacks %q:\n%s", want, welcome)
		}
	}
}

// The "Routing" section's RouteConfig example is one the router takes:
// every key known, every value valid.
func TestReadmeRouteConfig(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := codeBlocks(readmeSection(t, string(readme), "Routing"), "json")
	if len(blocks) != 1 {
		t.Fatalf("Routing has %d json blocks, want the one RouteConfig", len(blocks))
	}
	data := strings.ReplaceAll(blocks[0], "<id>", uuid.Must(uuid.NewV7()).String())
	rc, err := events.DecodeRouteConfig([]byte(data))
	if err != nil {
		t.Fatalf("README's RouteConfig: %v\n%s", err, data)
	}
	if rc.Strategy == "" || rc.HashHeader == "" || len(rc.Weights) != 1 {
		t.Errorf("README's RouteConfig read as %+v", rc)
	}
}

// readmeSection is the text under a heading, up to the next heading of
// the same or a higher level.
func readmeSection(t *testing.T, readme, heading string) string {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(readme))
	var out []string
	level := 0
	inCode := false
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if !inCode && strings.HasPrefix(line, "#") {
			n := len(line) - len(strings.TrimLeft(line, "#"))
			switch {
			case strings.TrimSpace(line[n:]) == heading:
				level = n
				continue
			case level > 0 && n <= level:
				return strings.Join(out, "\n")
			}
		}
		if level > 0 {
			out = append(out, line)
		}
	}
	if level == 0 {
		t.Fatalf("README has no section %q", heading)
	}
	return strings.Join(out, "\n")
}

// codeBlocks are the bodies of the fenced blocks of a language.
func codeBlocks(text, lang string) []string {
	var out []string
	var cur []string
	in := false
	for _, line := range strings.Split(text, "\n") {
		switch {
		case !in && line == "```"+lang:
			in, cur = true, nil
		case in && line == "```":
			in = false
			out = append(out, strings.Join(cur, "\n"))
		case in:
			cur = append(cur, line)
		}
	}
	return out
}
