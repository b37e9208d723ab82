package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/config"
	"github.com/hailsd/hail/credentials"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/proctest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"
)

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	DependsOn   dependsOn         `yaml:"depends_on"`
	Profiles    []string          `yaml:"profiles"`
}

// dependsOn is depends_on in either form: a list of services, or a map of
// each to its condition.
type dependsOn []string

func (d *dependsOn) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.SequenceNode {
		var list []string
		if err := n.Decode(&list); err != nil {
			return err
		}
		*d = list
		return nil
	}
	var m map[string]struct {
		Condition string `yaml:"condition"`
	}
	if err := n.Decode(&m); err != nil {
		return err
	}
	*d = slices.Sorted(maps.Keys(m))
	return nil
}

// securePath is where the credentials volume is mounted.
const securePath = "/secure/"

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	data, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return f
}

// hailServices are the compose services that run a hail program.
func (f composeFile) hailServices() []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(f.Services)) {
		if f.Services[name].Build != nil {
			out = append(out, name)
		}
	}
	return out
}

// byProgram are the services that run program (a one-shot command of it,
// secure init, is not one).
func (f composeFile) byProgram(program string) []string {
	var out []string
	for _, name := range f.hailServices() {
		if c := f.Services[name].Command; len(c) == 1 && c[0] == program {
			out = append(out, name)
		}
	}
	return out
}

// listenPorts are the container ports a service listens on, read from its
// environment.
func (s composeService) listenPorts() map[int]bool {
	out := map[int]bool{}
	for k, v := range s.Environment {
		if k == "HAIL_MONITOR_PORT" {
			if p, err := strconv.Atoi(v); err == nil {
				out[p] = true
			}
		}
		if m := regexp.MustCompile(`^0\.0\.0\.0:(\d+)$`).FindStringSubmatch(v); m != nil {
			p, _ := strconv.Atoi(m[1])
			out[p] = true
		}
	}
	return out
}

func TestComposeFileConsistent(t *testing.T) {
	f := loadCompose(t)
	dockerfile, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	f.checkWiring(t)
	secureDir := t.TempDir()
	if _, err := credentials.Write(secureDir, credentials.Options{Services: []string{"echo", "greeter"}, HashCost: credentials.MinHashCost}); err != nil {
		t.Fatal(err)
	}
	f.checkPrograms(t, dockerfile, secureDir)

	// The NATS cluster: one name, distinct server names, every server
	// routing to every server at its cluster port, data on a volume.
	natsServers := f.byProgram("nats")
	if len(natsServers) != 3 {
		t.Fatalf("%d NATS servers, want 3", len(natsServers))
	}
	clientPort := map[string]string{}
	var want []string
	for _, n := range natsServers {
		env := f.Services[n].Environment
		_, cport, _ := strings.Cut(env["HAIL_CLUSTER_LISTEN"], ":")
		want = append(want, "nats-route://"+n+":"+cport)
		_, clientPort[n], _ = strings.Cut(env["HAIL_LISTEN"], ":")
	}
	names := map[string]bool{}
	for _, n := range natsServers {
		env := f.Services[n].Environment
		if env["HAIL_CLUSTER_NAME"] != f.Services[natsServers[0]].Environment["HAIL_CLUSTER_NAME"] || env["HAIL_CLUSTER_NAME"] == "" {
			t.Errorf("%s: cluster name %q differs or is empty", n, env["HAIL_CLUSTER_NAME"])
		}
		if names[env["HAIL_NAME"]] {
			t.Errorf("%s: server name %q is taken", n, env["HAIL_NAME"])
		}
		names[env["HAIL_NAME"]] = true
		routes := strings.Split(env["HAIL_CLUSTER_ROUTES"], ",")
		slices.Sort(routes)
		if !slices.Equal(routes, want) {
			t.Errorf("%s routes %v, want %v", n, routes, want)
		}
		onVolume := false
		for _, v := range f.Services[n].Volumes {
			_, dst, _ := strings.Cut(v, ":")
			onVolume = onVolume || dst == env["HAIL_STORE_DIR"]
		}
		if !onVolume {
			t.Errorf("%s keeps JetStream data in %s, which is not a volume", n, env["HAIL_STORE_DIR"])
		}
		// The programs run as nonroot: the directory a new volume copies
		// must be theirs.
		if !regexp.MustCompile(`(?m)^COPY .*--chown=nonroot:nonroot \S+ ` + regexp.QuoteMeta(env["HAIL_STORE_DIR"]) + `$`).Match(dockerfile) {
			t.Errorf("%s: the Dockerfile does not give %s to the nonroot user", n, env["HAIL_STORE_DIR"])
		}
	}
	// Every other program reaches every NATS server at its client port.
	for _, name := range f.hailServices() {
		url, ok := f.Services[name].Environment["HAIL_NATS_URL"]
		if !ok {
			continue
		}
		var got []string
		for _, u := range strings.Split(url, ",") {
			if !strings.HasPrefix(u, "tls://") {
				t.Errorf("%s: %s is not a TLS URL", name, u)
			}
			host, port, _ := strings.Cut(strings.TrimPrefix(u, "tls://"), ":")
			if clientPort[host] != port {
				t.Errorf("%s: %s is not a NATS server's client address", name, u)
			}
			got = append(got, host)
		}
		if slices.Sort(got); !slices.Equal(got, natsServers) {
			t.Errorf("%s reaches %v, want all of %v", name, got, natsServers)
		}
	}
	// Secured: the servers with TLS (clients and routes) and the roles'
	// auth.conf; every program its own role's user, password file, CA
	// and inbox; nobody insecure; the services' users scoped-only, so
	// every instance announces scoped.
	roleOf := map[string]string{"discovery": "discovery", "router": "router", "echo": "svc-echo", "agent": "svc-greeter"}
	for _, name := range f.hailServices() {
		sv := f.Services[name]
		env := sv.Environment
		if env["HAIL_INSECURE"] != "" {
			t.Errorf("%s runs insecure", name)
		}
		if len(sv.Command) == 1 && sv.Command[0] == "nats" {
			for _, k := range []string{"HAIL_TLS_CERT", "HAIL_TLS_KEY", "HAIL_TLS_CA", "HAIL_AUTH_FILE"} {
				if !strings.HasPrefix(env[k], securePath) {
					t.Errorf("%s: %s is %q, not a file of the credentials volume", name, k, env[k])
				}
			}
		}
		if _, ok := env["HAIL_NATS_URL"]; !ok {
			continue
		}
		role := roleOf[sv.Command[0]]
		want := map[string]string{"HAIL_NATS_USER": role, "HAIL_NATS_PASSWORD_FILE": securePath + role + ".password",
			"HAIL_NATS_TLS_CA": securePath + "ca.pem", "HAIL_NATS_INBOX_PREFIX": "_INBOX." + role}
		for k, v := range want {
			if env[k] != v {
				t.Errorf("%s: %s is %q, want %q", name, k, env[k], v)
			}
		}
		if sv.Command[0] == "echo" && env["HAIL_SCOPED"] != "true" {
			t.Errorf("%s does not announce scoped; its user is scoped-only", name)
		}
	}
	var initCmd []string
	for _, name := range f.hailServices() {
		if c := f.Services[name].Command; len(c) > 2 && c[0] == "nats" && c[1] == "secure" {
			initCmd = c
		}
	}
	// The programs connect as svc-<S>, which secure init writes only with
	// --shared-service-users (identities are its default).
	for _, flag := range []string{"--shared-service-users", "--scoped-only", "--keep"} {
		if !slices.Contains(initCmd, flag) {
			t.Errorf("secure init %v: want %s", initCmd, flag)
		}
	}
	if agentConf, err := os.ReadFile("../deploy/agent-compose.yaml"); err != nil || !strings.Contains(string(agentConf), "scoped: true") {
		t.Errorf("the agent's services do not announce scoped (%v)", err)
	}
	if n := len(f.byProgram("discovery")); n != 2 {
		t.Errorf("%d discovery nodes, want 2", n)
	}
	if n := len(f.byProgram("router")); n != 1 {
		t.Errorf("%d routers, want 1", n)
	}
	if n := len(f.byProgram("echo")); n != 3 {
		t.Errorf("%d echo instances, want 3", n)
	}

	// Prometheus scrapes every program that serves /metrics, where it does.
	prom, err := os.ReadFile("../deploy/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]bool{}
	for _, m := range regexp.MustCompile(`"([a-z0-9-]+:\d+)"`).FindAllStringSubmatch(string(prom), -1) {
		targets[m[1]] = true
	}
	for _, name := range f.hailServices() {
		addr, ok := f.Services[name].Environment["HAIL_HTTP_ADDR"]
		if !ok {
			continue
		}
		_, port, _ := strings.Cut(addr, ":")
		if !targets[name+":"+port] {
			t.Errorf("prometheus.yml does not scrape %s:%s", name, port)
		}
		delete(targets, name+":"+port)
	}
	for tgt := range targets {
		t.Errorf("prometheus.yml scrapes %s, which serves no metrics", tgt)
	}
}

// printConfig runs program --print-config under env and returns its keys.
// hostPaths is a service's environment with HAIL_CONFIG, a path in the
// container, mapped through the service's volumes to the repository's file.
func hostPaths(s composeService, secureDir string) map[string]string {
	env := maps.Clone(s.Environment)
	for k, v := range env {
		if strings.HasPrefix(v, securePath) {
			env[k] = filepath.Join(secureDir, strings.TrimPrefix(v, securePath))
		}
	}
	if p, ok := env["HAIL_CONFIG"]; ok {
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && parts[1] == p {
				env["HAIL_CONFIG"] = filepath.Join("..", parts[0])
			}
		}
	}
	return env
}

// checkWiring checks what compose itself resolves: every depends_on a
// service, every port published on 127.0.0.1 once and listened on by the
// program, every volume declared or a file of the repository.
func (f composeFile) checkWiring(t *testing.T) {
	t.Helper()
	hosts := map[string]bool{}
	for name, s := range f.Services {
		for _, d := range s.DependsOn {
			if _, ok := f.Services[d]; !ok {
				t.Errorf("%s depends on %s, which is not a service", name, d)
			}
		}
		for _, p := range s.Ports {
			parts := strings.Split(p, ":")
			if len(parts) != 3 || parts[0] != "127.0.0.1" {
				t.Errorf("%s: port %q is not 127.0.0.1:host:container (published beyond this machine)", name, p)
				continue
			}
			host, container := parts[1], parts[2]
			if hosts[host] {
				t.Errorf("%s: host port %s is published twice", name, host)
			}
			hosts[host] = true
			if s.Build != nil {
				cp, _ := strconv.Atoi(container)
				if !s.listenPorts()[cp] {
					t.Errorf("%s publishes container port %d, which it does not listen on (listens on %v)", name, cp, slices.Sorted(maps.Keys(s.listenPorts())))
				}
			}
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, "./") {
				if _, err := os.Stat(filepath.Join("..", src)); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			} else if _, ok := f.Volumes[src]; !ok {
				t.Errorf("%s mounts volume %s, which is not declared", name, src)
			}
		}
	}
}

// checkPrograms checks that every hail service runs a program the
// Dockerfile builds, with an environment that program accepts (each
// HAIL_* is one of its keys, and the whole validates: --print-config
// exits 0); secureDir stands for the credentials volume.
func (f composeFile) checkPrograms(t *testing.T, dockerfile []byte, secureDir string) {
	t.Helper()
	for _, name := range f.hailServices() {
		s := f.Services[name]
		if len(s.Command) == 0 {
			t.Errorf("%s has no command", name)
			continue
		}
		program := s.Command[0]
		if !slices.Contains(programs, program) || !strings.Contains(string(dockerfile), "./services/"+program) {
			t.Errorf("%s runs %q, which the Dockerfile does not build", name, program)
			continue
		}
		keys, err := printConfig(program, hostPaths(s, secureDir))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		envs := map[string]bool{}
		for k := range keys {
			envs[config.EnvName(k)] = true
		}
		for k := range s.Environment {
			if !envs[k] && k != config.FileEnv { // HAIL_CONFIG names the file, not a key
				t.Errorf("%s sets %s, which is not a key of %s", name, k, program)
			}
		}
	}
}

// secureInit runs the file's one-shot secure init command, as the
// secure-init service does, into a directory standing for its volume.
func (f composeFile) secureInit(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range f.hailServices() {
		c := f.Services[name].Command
		if len(c) < 2 || c[1] != "secure" {
			continue
		}
		args := slices.Clone(c[1:])
		for i, a := range args {
			if a == strings.TrimSuffix(securePath, "/") {
				args[i] = dir
			}
		}
		if out, err := exec.Command(filepath.Join(bins, c[0]), args...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
	}
	return dir
}

// processEnv gives each service's environment as written, for a process
// on loopback: service host names made 127.0.0.1 and every port a free
// one (the same for the same service and port), data in the test's
// directories, the credentials volume secureDir.
func (f composeFile) processEnv(t *testing.T, secureDir string) func(name string) map[string]string {
	ports := map[string]int{} // "service:port" -> loopback port
	port := func(service, p string) string {
		key := service + ":" + p
		if _, ok := ports[key]; !ok {
			ports[key] = bustest.FreePort(t)
		}
		return strconv.Itoa(ports[key])
	}
	addr := regexp.MustCompile(`([a-z0-9.-]+):(\d+)`)
	return func(name string) map[string]string {
		env := map[string]string{}
		for k, v := range f.Services[name].Environment {
			switch k {
			case "HAIL_STORE_DIR":
				v = filepath.Join(t.TempDir(), "data")
			case "HAIL_MONITOR_PORT":
				v = port(name, v)
			case "HAIL_CONFIG":
				// The mounted file, with its addresses mapped like the
				// environment's.
				data, err := os.ReadFile(hostPaths(f.Services[name], secureDir)["HAIL_CONFIG"])
				if err != nil {
					t.Fatal(err)
				}
				text := regexp.MustCompile(`address: ([a-z0-9.-]+)\n(\s+)port: (\d+)`).ReplaceAllStringFunc(string(data), func(s string) string {
					m := regexp.MustCompile(`address: ([a-z0-9.-]+)\n(\s+)port: (\d+)`).FindStringSubmatch(s)
					if _, ok := f.Services[m[1]]; !ok {
						return s
					}
					return "address: 127.0.0.1\n" + m[2] + "port: " + port(m[1], m[3])
				})
				text = addr.ReplaceAllStringFunc(text, func(s string) string {
					m := addr.FindStringSubmatch(s)
					if _, ok := f.Services[m[1]]; !ok {
						return s
					}
					return "127.0.0.1:" + port(m[1], m[2])
				})
				v = filepath.Join(t.TempDir(), "config.yaml")
				if err := os.WriteFile(v, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			default:
				if strings.HasPrefix(v, securePath) {
					env[k] = filepath.Join(secureDir, strings.TrimPrefix(v, securePath))
					continue
				}
				v = addr.ReplaceAllStringFunc(v, func(s string) string {
					m := addr.FindStringSubmatch(s)
					host := m[1]
					if host == "0.0.0.0" {
						host = name
					}
					if _, ok := f.Services[host]; !ok {
						return s
					}
					return "127.0.0.1:" + port(host, m[2])
				})
			}
			env[k] = v
		}
		env["HAIL_LOG_LEVEL"] = "warn"
		if name == "agent" {
			// In its container the agent's DNS and data are its own; as
			// a process here they would be the defaults a developer's
			// own agent or dev stack may hold.
			env["HAIL_DNS_ADDR"] = "127.0.0.1:" + port(name+"-dns", "8600")
			env["HAIL_DATA_DIR"] = t.TempDir()
		}
		return env
	}
}

func printConfig(program string, env map[string]string) (map[string]bool, error) {
	cmd := exec.Command(filepath.Join(bins, program), "--print-config")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s --print-config with its compose environment: %v\n%s", program, err, out)
	}
	var tree map[string]any
	if err := yaml.Unmarshal(out, &tree); err != nil {
		return nil, fmt.Errorf("%s --print-config: %v", program, err)
	}
	keys := map[string]bool{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+".", sub)
				continue
			}
			keys[prefix+k] = true
		}
	}
	walk("", tree)
	return keys, nil
}

// The compose topology as OS processes on loopback: each service's
// environment as written, with service host names made 127.0.0.1 and every
// port a free one, then requests routed through it.
func TestComposeTopologyAsProcesses(t *testing.T) {
	f := loadCompose(t)
	secureDir := f.secureInit(t)
	creds, err := credentials.Read(secureDir)
	if err != nil {
		t.Fatal(err)
	}
	envOf := f.processEnv(t, secureDir)
	procs := map[string]*proctest.Process{}
	run := func(program string) {
		for _, name := range f.byProgram(program) {
			procs[name] = start(t, name, program, envOf(name))
		}
	}
	run("nats")
	natsURL := envOf(f.byProgram("router")[0])["HAIL_NATS_URL"]
	// The test looks at JetStream as discovery and routes as the caller.
	connectAs := func(role string) (*nats.Conn, error) {
		opts, err := creds.Options(role)
		if err != nil {
			return nil, err
		}
		return nats.Connect(natsURL, opts...)
	}
	var nc *nats.Conn
	bustest.Eventually(t, 60*time.Second, func() error {
		for _, n := range f.byProgram("nats") {
			if err := procs[n].Exited(); err != nil {
				return err
			}
		}
		c, err := connectAs("discovery")
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		js, _ := jetstream.New(c)
		if _, err := js.AccountInfo(ctx); err != nil {
			c.Close()
			return fmt.Errorf("JetStream not ready: %w", err)
		}
		nc = c
		return nil
	})
	t.Cleanup(nc.Close)
	caller, err := connectAs("caller")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(caller.Close)

	run("discovery")
	run("router")
	run("echo")
	run("greeter")
	run("agent")
	httpAddr := func(name string) string { return envOf(name)["HAIL_HTTP_ADDR"] }
	for _, name := range append(f.byProgram("discovery"), f.byProgram("router")...) {
		procs[name].WaitReady(t, httpAddr(name))
	}
	echoes := f.byProgram("echo")
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	bustest.Eventually(t, 30*time.Second, func() error {
		kv, err := js.KeyValue(ctx, "hail_instances")
		if err != nil {
			return err
		}
		keys, err := kv.Keys(ctx)
		if err != nil {
			return err
		}
		if want := len(echoes) + len(f.byProgram("greeter")); len(keys) != want {
			return fmt.Errorf("%d instances registered, want %d (the echoes and the greeter)", len(keys), want)
		}
		return nil
	})
	// The greeter, behind its agent, through the router's ingress.
	ingress := envOf(f.byProgram("router")[0])["HAIL_INGRESS_ADDR"]
	bustest.Eventually(t, 30*time.Second, func() error {
		body, err := httpGet(ctx, "http://"+ingress+"/greeter/hello")
		if err != nil {
			return err
		}
		if !strings.Contains(body, "from greeter") {
			return fmt.Errorf("ingress to greeter: %q", body)
		}
		return nil
	})

	answered := map[string]int{}
	bustest.Eventually(t, 30*time.Second, func() error {
		for range 60 {
			m, err := caller.Request("hail.route.echo.say", []byte("hi"), 2*time.Second)
			if err != nil {
				return err
			}
			if code := m.Header.Get(events.HeaderServiceErrorCode); code != "" {
				return fmt.Errorf("routed request failed: %s %s", code, m.Header.Get(events.HeaderServiceError))
			}
			answered[m.Header.Get(events.HeaderInstance)]++
		}
		if len(answered) != len(echoes) {
			return fmt.Errorf("answered by %d instances, want all %d: %v", len(answered), len(echoes), answered)
		}
		return nil
	})

	// Every program's /metrics is Prometheus text with its series, and the
	// counters of what flowed moved: routed requests, the requests each
	// echo served, heartbeats sent.
	want := map[string][]string{
		"discovery": {"hail_discovery_instances", "hail_discovery_heartbeats_sent_total", "hail_discovery_heartbeats_missed_total", "hail_discovery_transitions_total", "hail_discovery_rejected_total", "hail_discovery_kv_errors_total", "hail_discovery_self_preservation", "process_cpu_seconds_total"},
		"router":    {"hail_router_requests_total", "hail_router_request_duration_seconds_bucket", "hail_router_retries_total", "hail_router_ejections_total", "process_cpu_seconds_total"},
		"echo":      {"hail_instance_requests_total", "process_cpu_seconds_total"},
	}
	// A node that owns no instance (rendezvous hashing may give all three
	// to the other) sends no heartbeat and observes no RTT; the region's
	// nodes do.
	bustest.Eventually(t, 10*time.Second, func() error {
		for _, name := range f.byProgram("discovery") {
			text, err := httpGet(ctx, "http://"+httpAddr(name)+"/metrics")
			if err == nil && checkProm(text, "hail_discovery_heartbeat_rtt_seconds_bucket") == nil && sample(text, "hail_discovery_heartbeats_sent_total") > 0 {
				return nil
			}
		}
		return errors.New("no discovery node has sent a heartbeat and observed its RTT")
	})
	for _, name := range f.hailServices() {
		a := httpAddr(name)
		if a == "" {
			continue
		}
		program := f.Services[name].Command[0]
		bustest.Eventually(t, 10*time.Second, func() error {
			text, err := httpGet(ctx, "http://"+a+"/metrics")
			if err != nil {
				return err
			}
			if err := checkProm(text, want[program]...); err != nil {
				return fmt.Errorf("%s /metrics: %w", name, err)
			}
			switch program {
			case "router":
				if n := sample(text, `hail_router_requests_total{service="echo",endpoint="say",outcome="ok"}`); n < 60 {
					return fmt.Errorf("router counted %v ok requests, want at least 60", n)
				}
			case "echo": // every echo answered some of them (checked above)
				if n := sample(text, `hail_instance_requests_total{service="echo",endpoint="say",outcome="ok"}`); n < 1 {
					return fmt.Errorf("%s counted %v ok requests, want at least 1", name, n)
				}
			}
			return nil
		})
	}

	// One echo leaves (SIGTERM: deregister, drain); callers see no error.
	procs[echoes[0]].Stop(t)
	for i := range 100 {
		m, err := caller.Request("hail.route.echo.say", []byte("hi"), 5*time.Second)
		if err != nil {
			t.Fatalf("request %d after an instance left: %v", i, err)
		}
		if code := m.Header.Get(events.HeaderServiceErrorCode); code != "" {
			t.Fatalf("request %d after an instance left: %s %s", i, code, m.Header.Get(events.HeaderServiceError))
		}
	}
	// Everything above ran under least privilege: no server logged a
	// permission violation.
	for _, n := range f.byProgram("nats") {
		if out := procs[n].Output(); strings.Contains(out, "Violation") {
			t.Errorf("%s logged a permission violation:\n%s", n, grepViolations(out))
		}
	}
}

func grepViolations(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "Violation") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// The commented example configs load as they are.
func TestExampleConfigsLoad(t *testing.T) {
	for _, program := range []string{"discovery", "router"} {
		cmd := exec.Command(filepath.Join(bins, program), "--config", filepath.Join("..", "deploy", program+".yaml"), "--print-config")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("deploy/%s.yaml: %v\n%s", program, err, out)
		}
	}
}

// The README's configuration reference names every key of every program,
// as --print-config lists them.
func TestReadmeConfigReference(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	start := strings.Index(text, "## Configuration\n")
	if start < 0 {
		t.Fatal("README has no Configuration section")
	}
	text = text[start:]
	if end := strings.Index(text[3:], "\n## "); end >= 0 {
		text = text[:end+3]
	}
	for _, program := range programs {
		_, section, ok := strings.Cut(text, "#### `"+program+"`\n")
		if !ok {
			t.Errorf("README's Configuration has no section for %s", program)
			continue
		}
		if end := strings.Index(section, "\n#### "); end >= 0 {
			section = section[:end]
		}
		keys, err := printConfig(program, nil)
		if err != nil {
			t.Fatal(err)
		}
		for key := range keys {
			if !strings.Contains(section, "`"+key+"`") {
				t.Errorf("README's %s section does not name %s", program, key)
			}
		}
	}
}
