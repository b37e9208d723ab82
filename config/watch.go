package config

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/knadh/koanf/v2"
)

// WatchEvery is how often Watch reads the config file. Reading beats
// inotify here: it sees edits through bind mounts, Kubernetes ConfigMap
// symlink swaps and editors that replace the file, and the file is small.
const WatchEvery = 500 * time.Millisecond

// Watch is how a running program follows edits of its config file.
type Watch[T Program] struct {
	// Fresh returns a config holding the defaults.
	Fresh func() T
	// Reloadable are the keys (or key prefixes ending in ".") a running
	// program takes up; log.level always is. Other changed keys are
	// reported as needing a restart and are not applied.
	Reloadable []string
	// Apply takes up a new config that loaded and validated; it reads
	// only reloadable keys. An error keeps the old config in force.
	Apply func(T) error
	// Metrics counts reloads as hail_config_reloads_total{outcome}.
	Metrics *metrics.Set
}

// Run follows l.File until ctx ends; current is the config running. Each change
// loads the whole config again in the same order as at start-up (defaults,
// file, environment, flags), so flags and HAIL_* still win over the file.
// A file that does not load or validate is refused with a log line naming
// the key, counted, and the running config stays.
func (w Watch[T]) Run(ctx context.Context, l *Loaded, current T) {
	applied := w.Metrics.GetOrCreateCounter(`hail_config_reloads_total{outcome="applied"}`)
	refused := w.Metrics.GetOrCreateCounter(`hail_config_reloads_total{outcome="refused"}`)
	if l == nil || l.File == "" {
		return
	}
	log := l.Log.With("component", "config", "file", l.File)
	last := l.seen
	// inForce is what runs, key by key: a key that needs a restart keeps
	// its old value here however often the file changes it.
	inForce := flatten(current)
	tick := time.NewTicker(WatchEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		data, err := os.ReadFile(l.File)
		if err == nil && bytes.Equal(data, last) {
			continue
		}
		if err != nil && last == nil {
			continue // still missing: said once already
		}
		last = data
		next := w.Fresh()
		res, err := Load(next, l.opts)
		if err != nil {
			refused.Inc()
			log.Error("config file edit refused; the running config stays", "err", err)
			continue
		}
		last = res.FileData // what was loaded, should the file have changed again since
		fresh := flatten(next)
		var now, later []string
		for _, key := range slices.Sorted(maps.Keys(fresh)) {
			if fresh[key] == inForce[key] {
				continue
			}
			if key == "log.level" || reloadable(w.Reloadable, key) {
				now = append(now, key)
			} else {
				later = append(later, key)
			}
		}
		if len(later) > 0 {
			log.Warn("config keys changed that take effect only after a restart", "keys", strings.Join(later, ","))
		}
		if len(now) == 0 {
			continue
		}
		if w.Apply != nil {
			if err := w.Apply(next); err != nil {
				refused.Inc()
				log.Error("config file edit refused; the running config stays", "err", err)
				continue
			}
		}
		var lv slog.Level
		_ = lv.UnmarshalText([]byte(next.Logging().Level)) // validated by Load
		l.level.Set(lv)
		applied.Inc()
		log.Info("config reloaded", "changed", strings.Join(now, ","))
		for _, key := range now {
			inForce[key] = fresh[key]
		}
	}
}

func reloadable(keys []string, key string) bool {
	for _, k := range keys {
		if k == key || (strings.HasSuffix(k, ".") && strings.HasPrefix(key, k)) {
			return true
		}
	}
	return false
}

func flatten(cfg any) map[string]string {
	k := koanf.New(".")
	_ = k.Load(structProvider{cfg}, nil) // a config struct always loads
	out := map[string]string{}
	for key, v := range k.All() {
		out[key] = fmt.Sprint(v)
	}
	return out
}
