package callout_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/bcrypt"

	"github.com/hailsd/hail/bus/embedded"
	"github.com/hailsd/hail/callout"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/identity"
	"github.com/hailsd/hail/roles"
)

// BenchmarkConnects measures connects a second and the process's CPU per
// connect (server, callout and clients are all in it) of three ways in:
// a plain password, a bcrypt one at secure init's cost 11 (v1.2's
// service users), and an identity through the auth callout (v1.6). The
// paths take turns in rotation, so drift on a shared machine falls on
// each alike; every connect is closed again at once. Run once:
//
//	go test -run '^$' -bench BenchmarkConnects -benchtime 1x ./callout/
func BenchmarkConnects(b *testing.B) {
	const (
		turns    = 4
		perTurn  = 2 * time.Second
		inFlight = 8
	)
	dir := b.TempDir()
	issuer, err := nkeys.CreateAccount()
	if err != nil {
		b.Fatal(err)
	}
	issuerPub, _ := issuer.PublicKey()
	hashed, err := bcrypt.GenerateFromPassword([]byte("pw-bcrypt"), 11)
	if err != nil {
		b.Fatal(err)
	}
	rs := []roles.Role{{Name: "plain", Subscribe: []string{"_INBOX.plain.>"}}, {Name: "bcrypt", Subscribe: []string{"_INBOX.bcrypt.>"}}, roles.CalloutUser()}
	conf, err := roles.AuthConf(rs, map[string]string{"plain": "pw-plain", "bcrypt": string(hashed), "callout": "pw-callout"})
	if err != nil {
		b.Fatal(err)
	}
	conf += roles.CalloutConf(issuerPub, roles.Account, []string{"plain", "bcrypt", "callout"})
	authFile := filepath.Join(dir, "auth.conf")
	if err := os.WriteFile(authFile, []byte(conf), 0o600); err != nil {
		b.Fatal(err)
	}
	configure, err := embedded.Security{AuthFile: authFile}.Configure()
	if err != nil {
		b.Fatal(err)
	}
	srv, err := embedded.StartServer(embedded.ServerOptions{Name: "bench", Port: -1, StoreDir: b.TempDir(), Configure: configure})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Shutdown()
	c, err := callout.New(callout.Config{Issuer: issuer, Account: roles.Account, Secrets: map[string]string{"echo": "secret-echo"}, Subjects: events.Subjects{}})
	if err != nil {
		b.Fatal(err)
	}
	cnc, err := nats.Connect("", nats.InProcessServer(srv), nats.UserInfo("callout", "pw-callout"))
	if err != nil {
		b.Fatal(err)
	}
	defer cnc.Close()
	if _, err := c.Serve(cnc); err != nil {
		b.Fatal(err)
	}
	// Identities made beforehand: a key is the instance's, made once.
	ids := make([]*identity.Identity, 256)
	for i := range ids {
		if ids[i], err = identity.New(); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	paths := []struct {
		name string
		opts func() []nats.Option
	}{
		{"plain password", func() []nats.Option { return []nats.Option{nats.UserInfo("plain", "pw-plain")} }},
		{"bcrypt cost 11", func() []nats.Option { return []nats.Option{nats.UserInfo("bcrypt", "pw-bcrypt")} }},
		{"callout (identity)", func() []nats.Option {
			return ids[next.Add(1)%int64(len(ids))].Options("echo", "secret-echo")
		}},
	}
	type total struct {
		connects, errors int
		cpu, wall        time.Duration
		rates            []float64
	}
	totals := make([]total, len(paths))
	load0 := loadavg()
	for b.Loop() {
		for turn := 0; turn < turns; turn++ {
			for p, path := range paths {
				n, errs, cpu, wall := connectFor(srv.ClientURL(), path.opts, inFlight, perTurn)
				t := &totals[p]
				t.connects += n
				t.errors += errs
				t.cpu += cpu
				t.wall += wall
				t.rates = append(t.rates, float64(n)/wall.Seconds())
			}
		}
	}
	var lines []string
	for p, path := range paths {
		t := totals[p]
		rate := float64(t.connects) / t.wall.Seconds()
		cpu := time.Duration(0)
		if t.connects > 0 {
			cpu = t.cpu / time.Duration(t.connects)
		}
		lines = append(lines, fmt.Sprintf("%-20s %8.0f connects/s (turns %s)  %8.3f ms CPU/connect  %d connects, %d failed",
			path.name, rate, spread(t.rates), float64(cpu)/float64(time.Millisecond), t.connects, t.errors))
		key := strings.Fields(path.name)[0]
		b.ReportMetric(rate, key+"-connects/s")
		b.ReportMetric(float64(cpu)/float64(time.Millisecond), key+"-ms-cpu/connect")
	}
	b.Logf("%d clients connecting at once, %d turns of %v per path; load average %s at the start, %s at the end\n%s",
		inFlight, turns, perTurn, load0, loadavg(), strings.Join(lines, "\n"))
}

// connectFor connects and closes again from inFlight goroutines for d:
// the connects made and failed, the process's CPU and the wall time.
func connectFor(url string, opts func() []nats.Option, inFlight int, d time.Duration) (n, errs int, cpu, wall time.Duration) {
	var ok, failed atomic.Int64
	deadline := time.Now().Add(d)
	cpu0, start := processCPU(), time.Now()
	var wg sync.WaitGroup
	for range inFlight {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				nc, err := nats.Connect(url, append(opts(), nats.MaxReconnects(0), nats.Timeout(10*time.Second))...)
				if err != nil {
					failed.Add(1)
					continue
				}
				nc.Close()
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	return int(ok.Load()), int(failed.Load()), processCPU() - cpu0, time.Since(start)
}

// processCPU is this process's CPU time, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// spread is the lowest and highest of the turns' rates.
func spread(rates []float64) string {
	if len(rates) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f-%.0f", slices.Min(rates), slices.Max(rates))
}
