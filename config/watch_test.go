package config_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/config"
	"github.com/hailsd/hail/internal/testlog"
)

func (c *testConfig) Logging() config.Log { return c.Log }

// applied records what Watch handed the program.
type applied struct {
	mu   sync.Mutex
	seen []*testConfig
}

func (a *applied) apply(c *testConfig) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seen = append(a.seen, c)
	return nil
}

func (a *applied) last() *testConfig {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.seen) == 0 {
		return nil
	}
	return a.seen[len(a.seen)-1]
}

func (a *applied) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.seen)
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	bustest.Eventually(t, 10*time.Second, func() error {
		if !ok() {
			return fmt.Errorf("waiting for %s", what)
		}
		return nil
	})
}

func TestWatchAppliesEditsAndRefusesBrokenOnes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hail.yaml")
	bustest.ReplaceFile(t, path, "heartbeat:\n  interval: 1s\nlog:\n  level: info\n")
	cfg := defaults()
	var out testlog.Buffer
	loaded, err := config.Start(cfg, "test", []string{"--config", path}, env(map[string]string{"HAIL_NATS_URL": "nats://env:4222"}), &out)
	if err != nil || loaded == nil {
		t.Fatalf("start: %v", err)
	}
	set := metrics.NewSet()
	var got applied
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		config.Watch[*testConfig]{Fresh: defaults, Reloadable: []string{"heartbeat."}, Apply: got.apply, Metrics: set}.Run(ctx, loaded, cfg)
	}()
	t.Cleanup(func() { cancel(); <-done })

	// A good edit: applied, with the environment still over the file.
	bustest.ReplaceFile(t, path, "heartbeat:\n  interval: 250ms\nlog:\n  level: debug\n")
	waitFor(t, "the edit applied", func() bool { return got.count() == 1 })
	if c := got.last(); c.Heartbeat.Interval != 250*time.Millisecond || c.NATS.URL != "nats://env:4222" {
		t.Errorf("applied interval %v url %s, want 250ms and the environment's URL", c.Heartbeat.Interval, c.NATS.URL)
	}
	// log.level is always live: debug lines now show.
	loaded.Log.Debug("now at debug")
	if !strings.Contains(out.String(), "now at debug") {
		t.Errorf("log level not raised to debug:\n%s", out.String())
	}

	// A broken edit: refused with the key named, counted, nothing applied.
	bustest.ReplaceFile(t, path, "heartbeat:\n  interval: -1s\n")
	waitFor(t, "the refusal logged", func() bool { return strings.Contains(out.String(), "config file edit refused") })
	if !strings.Contains(out.String(), "heartbeat.interval") {
		t.Errorf("refusal does not name heartbeat.interval:\n%s", out.String())
	}
	if n := counter(set, "refused"); n != 1 {
		t.Errorf("refused = %d, want 1", n)
	}
	// An unknown key and bad YAML are refused too.
	for i, text := range []string{"heartbeat:\n  intervall: 2s\n", "heartbeat: [\n"} {
		bustest.ReplaceFile(t, path, text)
		waitFor(t, fmt.Sprintf("refusal %d", i+2), func() bool { return counter(set, "refused") == uint64(i+2) })
	}
	if !strings.Contains(out.String(), `unknown key \"heartbeat.intervall\"`) {
		t.Errorf("unknown key not named:\n%s", out.String())
	}
	if got.count() != 1 {
		t.Errorf("%d configs applied, want only the good one", got.count())
	}

	// A key the program cannot take up live: said, not applied.
	bustest.ReplaceFile(t, path, "heartbeat:\n  interval: 250ms\nlog:\n  level: debug\nprefix: other\n")
	waitFor(t, "the restart warning", func() bool { return strings.Contains(out.String(), "take effect only after a restart") })
	if !strings.Contains(out.String(), "keys=prefix") {
		t.Errorf("restart warning does not name prefix:\n%s", out.String())
	}
	if got.count() != 1 {
		t.Errorf("a restart-only change was applied")
	}
	if n := counter(set, "applied"); n != 1 {
		t.Errorf("applied = %d, want 1", n)
	}

	// prefix back as it runs, and a live key changed: applied, and no
	// restart asked for (the running prefix never changed).
	bustest.ReplaceFile(t, path, "heartbeat:\n  interval: 300ms\nlog:\n  level: debug\n")
	waitFor(t, "the second edit applied", func() bool { return got.count() == 2 })
	if n := strings.Count(out.String(), "take effect only after a restart"); n != 1 {
		t.Errorf("restart asked for %d times, want once:\n%s", n, out.String())
	}
}

func counter(set *metrics.Set, outcome string) uint64 {
	return set.GetOrCreateCounter(fmt.Sprintf(`hail_config_reloads_total{outcome=%q}`, outcome)).Get()
}
