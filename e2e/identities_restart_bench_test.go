package e2e

import (
	"encoding/json"
	"flag"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/credentials"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/identity/identitytest"
	"github.com/hailsd/hail/member"
)

var restartIdentities = flag.Int("restart-identities", 10000, "BenchmarkIdentitiesRestartProcesses: identities restarted under")

// BenchmarkIdentitiesRestartProcesses is PROTOCOL v1.6's budget as
// processes: the nats program with its auth callout and a discovery
// process, set up by secure init (identities, its default) on loopback
// without TLS, and -restart-identities identities (10,000), each its
// own connection and member, in this benchmark's process. The NATS
// process is stopped with SIGTERM and started again on its store; the
// figure is the time from it taking connections until every identity
// has answered a heartbeat since and all are passing in discovery's
// registry (the budget: 10 s). Run once:
//
//	go test -run '^$' -bench BenchmarkIdentitiesRestartProcesses -benchtime 1x -timeout 20m ./e2e/
//
// The benchmark's process holds a file descriptor per identity: a
// limit of 20,000 open files holds 10,000 with room.
func BenchmarkIdentitiesRestartProcesses(b *testing.B) {
	n := *restartIdentities
	dir := filepath.Join(b.TempDir(), "secure")
	if out, err := exec.Command(filepath.Join(bins, "nats"), "secure", "init", "--dir", dir, "--services", "echo", "--hash-cost", "4").CombinedOutput(); err != nil {
		b.Fatalf("secure init: %v\n%s", err, out)
	}
	d, err := credentials.Read(dir)
	if err != nil {
		b.Fatal(err)
	}
	port, store := bustest.FreePort(b), b.TempDir()
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	natsArgs := []string{"--listen", "127.0.0.1:" + strconv.Itoa(port), "--store-dir", store, "--auth-file", d.File(credentials.AuthConfFile)}
	natsP := start(b, "nats", "nats", map[string]string{"HAIL_LOG_LEVEL": "warn"}, natsArgs...)
	// The static role's user and password, without the TLS its options
	// carry: this region is plain TCP on loopback.
	u, ok := d.User(events.RoleCaller)
	if !ok {
		b.Fatal("no caller user")
	}
	callerOpts := []nats.Option{nats.UserInfo(u.Name, u.Password), nats.CustomInboxPrefix(u.InboxPrefix)}
	role := func() (*nats.Conn, error) {
		return nats.Connect(url, append(callerOpts, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))...)
	}
	var caller *nats.Conn
	bustest.Eventually(b, time.Minute, func() (err error) {
		caller, err = role()
		return err
	})
	b.Cleanup(caller.Close)
	env := envFile(b, d.File(events.RoleDiscovery+".env"))
	env["HAIL_NATS_URL"], env["HAIL_LOG_LEVEL"], env["HAIL_NATS_TLS_CA"] = url, "warn", ""
	start(b, "discovery", "discovery", env, "--http-addr", "127.0.0.1:"+strconv.Itoa(bustest.FreePort(b)))

	secret, err := member.ReadSecret(d.File(credentials.SecretFile("echo")))
	if err != nil {
		b.Fatal(err)
	}
	begin := time.Now()
	fleet := startFleet(b, url, secret, n)
	b.Logf("%d identities joined %v after the start", n, time.Since(begin).Round(time.Millisecond))
	if err := bustest.PollEvery(5*time.Minute, time.Second, func() error { return fleet.back(caller, begin) }); err != nil {
		b.Fatalf("before the restart: %v", err)
	}
	b.Logf("%d identities passing %v after the start", n, time.Since(begin).Round(time.Millisecond))

	var total, worst time.Duration
	for b.Loop() {
		natsP.Stop(b)
		natsP = start(b, "nats", "nats", map[string]string{"HAIL_LOG_LEVEL": "warn"}, natsArgs...)
		// Ready: the server takes a static role's connection.
		bustest.Eventually(b, time.Minute, func() error {
			nc, err := nats.Connect(url, append(callerOpts, nats.Timeout(200*time.Millisecond))...)
			if err != nil {
				return err
			}
			nc.Close()
			return nil
		})
		ready := time.Now()
		last := ready
		if err := bustest.PollEvery(5*time.Minute, 250*time.Millisecond, func() error {
			err := fleet.back(caller, ready)
			if err != nil && time.Since(last) >= time.Second {
				last = time.Now()
				b.Logf("%v after the restart: %v", time.Since(ready).Round(time.Second), err)
			}
			return err
		}); err != nil {
			b.Fatalf("after the restart: %v", err)
		}
		took := time.Since(ready)
		b.Logf("all %d back and passing %v after the restarted server took connections", n, took.Round(time.Millisecond))
		total, worst = total+took, max(worst, took)
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s-to-passing")
	b.ReportMetric(worst.Seconds(), "worst-s-to-passing")
	b.ReportMetric(float64(n), "identities")
}

// fleet is n identities of echo, asked about as discovery answers.
type fleet struct{ *identitytest.Fleet }

func startFleet(b *testing.B, url, secret string, n int) fleet {
	return fleet{identitytest.StartFleet(b, url, "echo", secret, n)}
}

// back is nil once every identity has answered a heartbeat since since
// and discovery answers every one of them passing, asked page by page.
func (f fleet) back(caller *nats.Conn, since time.Time) error {
	if unheard := f.Unheard(since); unheard > 0 {
		return fmt.Errorf("%d of %d identities not heartbeated since", unheard, len(f.Members))
	}
	passing, after := 0, ""
	for {
		ask := map[string]any{"service": "echo", "limit": 2000}
		if after != "" {
			ask["after"] = after
		}
		q, _ := json.Marshal(ask)
		m, err := caller.Request(events.Subjects{}.DiscoveryInstances(), q, 5*time.Second)
		if err != nil {
			return fmt.Errorf("ask discovery: %w", err)
		}
		var recs []events.InstanceRecord
		if err := json.Unmarshal(m.Data, &recs); err != nil {
			return fmt.Errorf("instances: %w: %.200s", err, m.Data)
		}
		if len(recs) == 0 {
			break
		}
		for _, rec := range recs {
			if rec.Status == events.Passing {
				passing++
			}
		}
		after = recs[len(recs)-1].Key()
	}
	if passing < len(f.Members) {
		return fmt.Errorf("%d of %d passing in discovery's registry", passing, len(f.Members))
	}
	return nil
}
