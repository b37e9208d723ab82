package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.yaml.in/yaml/v3"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/credentials"
	"github.com/hailsd/hail/events"
)

// regionsOverride is the compose file that adds a second region.
const regionsOverride = "../docker-compose.regions.yml"

// loadComposeRegions is docker-compose.yml with docker-compose.regions.yml
// over it, merged as compose merges an override: a service the override
// names takes its environment key by key, its command whole, its ports,
// volumes and depends_on added; a new service comes as written.
func loadComposeRegions(t *testing.T) (merged composeFile, override composeFile) {
	t.Helper()
	merged = loadCompose(t)
	data, err := os.ReadFile(regionsOverride)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &override); err != nil {
		t.Fatalf("%s: %v", regionsOverride, err)
	}
	for name, o := range override.Services {
		s, ok := merged.Services[name]
		if !ok {
			merged.Services[name] = o
			continue
		}
		if s.Environment == nil {
			s.Environment = map[string]string{}
		} else {
			s.Environment = maps.Clone(s.Environment)
		}
		maps.Copy(s.Environment, o.Environment)
		if o.Command != nil {
			s.Command = o.Command
		}
		s.Ports = append(slices.Clone(s.Ports), o.Ports...)
		s.Volumes = append(slices.Clone(s.Volumes), o.Volumes...)
		s.DependsOn = append(slices.Clone(s.DependsOn), o.DependsOn...)
		merged.Services[name] = s
	}
	for v := range override.Volumes {
		merged.Volumes[v] = nil
	}
	return merged, override
}

// regionOf is the region of a service: a server's own, a client's the
// servers its HAIL_NATS_URL names (all of one region, or "" and false).
func (f composeFile) regionOf(name string) (string, bool) {
	env := f.Services[name].Environment
	if slices.Contains(f.byProgram("nats"), name) {
		return env["HAIL_REGION"], env["HAIL_REGION"] != ""
	}
	region := ""
	for _, u := range strings.Split(env["HAIL_NATS_URL"], ",") {
		host, _, _ := strings.Cut(strings.TrimPrefix(u, "tls://"), ":")
		r := f.Services[host].Environment["HAIL_REGION"]
		if r == "" || (region != "" && r != region) {
			return "", false
		}
		region = r
	}
	return region, region != ""
}

// docker-compose.regions.yml over docker-compose.yml is two regions that
// compose can run: every service it adds runs a program the Dockerfile
// builds with an environment that program accepts; it overrides only
// services docker-compose.yml has; each region's servers are named for it
// and the second links to a server of the first at its leafnode port;
// every client reaches the servers of one region; each region's discovery
// nodes and routers name the other in remote_regions; the one secure init
// set names every server; no host port is published twice.
func TestComposeRegionsFileConsistent(t *testing.T) {
	f, o := loadComposeRegions(t)
	dockerfile, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	base := loadCompose(t)
	for name, s := range o.Services {
		if _, ok := base.Services[name]; !ok && s.Build == nil {
			t.Errorf("%s overrides a service docker-compose.yml does not have, and builds nothing", name)
		}
	}
	f.checkWiring(t)
	f.checkPrograms(t, dockerfile, f.secureInit(t))

	// The regions: servers named for theirs, the second linked to the
	// first.
	servers := map[string][]string{} // region -> servers
	leafPort := map[string]string{}  // server -> its leafnode port
	for _, n := range f.byProgram("nats") {
		env := f.Services[n].Environment
		region, ok := f.regionOf(n)
		if !ok || events.ValidateRegion(region) != nil {
			t.Errorf("%s: region %q", n, region)
			continue
		}
		servers[region] = append(servers[region], n)
		if env["HAIL_CLUSTER_ROUTES"] != "" && env["HAIL_CLUSTER_NAME"] != region {
			t.Errorf("%s: cluster %q in region %q; a region's cluster is named for it", n, env["HAIL_CLUSTER_NAME"], region)
		}
		if l := env["HAIL_LEAFNODES_LISTEN"]; l != "" {
			_, leafPort[n], _ = strings.Cut(l, ":")
		}
	}
	regions := slices.Sorted(maps.Keys(servers))
	if !slices.Equal(regions, []string{"eu", "us"}) {
		t.Fatalf("regions %v, want eu and us", regions)
	}
	for _, n := range servers["us"] {
		remotes := f.Services[n].Environment["HAIL_LEAFNODES_REMOTES"]
		if remotes == "" {
			t.Errorf("%s links to no region", n)
		}
		for _, r := range strings.Split(remotes, ",") {
			host, port, _ := strings.Cut(strings.TrimPrefix(r, "nats-leaf://"), ":")
			if !slices.Contains(servers["eu"], host) || leafPort[host] != port {
				t.Errorf("%s links to %s, not an eu server's leafnode port", n, r)
			}
		}
	}
	var initCmd []string
	for _, name := range f.hailServices() {
		if c := f.Services[name].Command; len(c) > 2 && c[1] == "secure" {
			initCmd = c
		}
	}
	hosts := ""
	if i := slices.Index(initCmd, "--hosts"); i >= 0 && i+1 < len(initCmd) {
		hosts = initCmd[i+1]
	}
	for _, n := range f.byProgram("nats") {
		if !slices.Contains(strings.Split(hosts, ","), n) {
			t.Errorf("secure init --hosts %q does not name %s: its certificate would not verify", hosts, n)
		}
	}
	for _, name := range f.hailServices() {
		env := f.Services[name].Environment
		if _, ok := env["HAIL_NATS_URL"]; !ok {
			continue
		}
		region, ok := f.regionOf(name)
		if !ok {
			t.Errorf("%s: %s does not name the servers of one region", name, env["HAIL_NATS_URL"])
			continue
		}
		if p := f.Services[name].Command[0]; p == "discovery" || p == "router" {
			others := slices.DeleteFunc(slices.Clone(regions), func(r string) bool { return r == region })
			if got := env["HAIL_REMOTE_REGIONS"]; got != strings.Join(others, ",") {
				t.Errorf("%s in %s: remote_regions %q, want %q", name, region, got, strings.Join(others, ","))
			}
		}
	}
}

// The two regions of the compose files, secured as written, as processes
// on loopback: eu's three servers and us's, a discovery node in each and
// us's echo. The link comes up over TLS as the leaf user, and eu's
// discovery answers us's echo from hail_remote, fresh.
func TestComposeRegionsAsProcesses(t *testing.T) {
	f, _ := loadComposeRegions(t)
	secureDir := f.secureInit(t)
	creds, err := credentials.Read(secureDir)
	if err != nil {
		t.Fatal(err)
	}
	envOf := f.processEnv(t, secureDir)
	for _, n := range f.byProgram("nats") {
		start(t, n, "nats", envOf(n))
	}
	connect := func(service, role string) *nats.Conn {
		t.Helper()
		opts, err := creds.Options(role)
		if err != nil {
			t.Fatal(err)
		}
		var nc *nats.Conn
		bustest.Eventually(t, time.Minute, func() error {
			c, err := nats.Connect(envOf(service)["HAIL_NATS_URL"], opts...)
			if err != nil {
				return err
			}
			nc = c
			return nil
		})
		t.Cleanup(nc.Close)
		return nc
	}
	for _, name := range []string{"discovery-1", "discovery-us"} {
		p := start(t, name, "discovery", envOf(name))
		p.WaitReady(t, envOf(name)["HAIL_HTTP_ADDR"])
	}
	start(t, "echo-us-1", "echo", envOf("echo-us-1"))
	eu := connect("router", "caller")
	bustest.Eventually(t, time.Minute, func() error {
		m, err := eu.Request(events.Subjects{}.DiscoveryInstances(), []byte(`{"service":"echo","region":"us"}`), 2*time.Second)
		if err != nil {
			return err
		}
		var recs []events.InstanceRecord
		if err := json.Unmarshal(m.Data, &recs); err != nil {
			return fmt.Errorf("%w: %s", err, m.Data)
		}
		if len(recs) != 1 || recs[0].Region != "us" || recs[0].Stale || recs[0].AZ != "us-1" {
			return fmt.Errorf("eu's answer for us's echo: %s", m.Data)
		}
		return nil
	})
}
