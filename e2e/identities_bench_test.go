package e2e

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hailsd/hail/events"
)

// BenchmarkKilledIdentityCritical is PROTOCOL v1.6's detection measured:
// in a region set up with secure init --identities (the programs as
// processes), an echo process with its own identity is killed with
// kill -9, 10 times (a fresh one each time, another echo beside it), and
// the time from the kill to its critical event is taken: discovery marks
// the instance the DISCONNECT advisory names (user <S>.<id>). Run once:
//
//	go test -run '^$' -bench BenchmarkKilledIdentityCritical -benchtime 1x ./e2e/
func BenchmarkKilledIdentityCritical(b *testing.B) {
	const kills = 10
	r := startIdentityRegion(b)
	r.echo("bystander")
	var took []time.Duration
	for b.Loop() {
		for k := range kills {
			victim, v := r.echo(fmt.Sprintf("victim-%d-%d", len(took), k))
			hev := r.health("echo", v.ID())
			killed := time.Now()
			if err := syscall.Kill(victim.PID(), syscall.SIGKILL); err != nil {
				b.Fatal(err)
			}
			ev := waitStatus(b, hev, events.Critical, 10*time.Second)
			took = append(took, time.Since(killed))
			if !strings.HasPrefix(ev.Reason, "disconnected:") {
				b.Errorf("critical for %q, want the disconnect", ev.Reason)
			}
			victim.Kill()
		}
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "median-ms-to-critical")
	b.ReportMetric(float64(took[len(took)-1].Microseconds())/1000, "max-ms-to-critical")
	b.Logf("%d kills, load average %s", len(took), loadAverage())
}
