package config_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hailsd/hail/config"
)

type heartbeatSection struct {
	Interval time.Duration `koanf:"interval"`
	Missed   int           `koanf:"missed"`
}

type testConfig struct {
	NATS      config.NATS      `koanf:"nats"`
	Heartbeat heartbeatSection `koanf:"heartbeat"`
	Log       config.Log       `koanf:"log"`
	Prefix    string           `koanf:"prefix"`
}

func (c *testConfig) Validate() error {
	if c.Heartbeat.Interval <= 0 {
		return config.FieldError("heartbeat.interval", "must be positive, got %v", c.Heartbeat.Interval)
	}
	if err := c.NATS.Validate(); err != nil {
		return err
	}
	return c.Log.Validate()
}

func defaults() *testConfig {
	return &testConfig{
		NATS:      config.NATS{URL: config.DefaultNATSURL},
		Heartbeat: heartbeatSection{Interval: time.Second, Missed: 3},
		Log:       config.DefaultLog,
		Prefix:    "hail",
	}
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLayering(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantURL  string
		wantIntv time.Duration
		wantLvl  string
	}{
		{"defaults", nil, nil, config.DefaultNATSURL, time.Second, "info"},
		{"file", []string{"--config", "testdata/good.yaml"}, nil, "nats://file:4222", 2 * time.Second, "debug"},
		{"file from env", nil, map[string]string{"HAIL_CONFIG": "testdata/good.yaml"}, "nats://file:4222", 2 * time.Second, "debug"},
		{"env over file", []string{"--config", "testdata/good.yaml"}, map[string]string{"HAIL_NATS_URL": "nats://env:4222", "HAIL_HEARTBEAT_INTERVAL": "3s"},
			"nats://env:4222", 3 * time.Second, "debug"},
		{"flags over env", []string{"--nats-url", "nats://flag:4222", "--log-level=warn"}, map[string]string{"HAIL_NATS_URL": "nats://env:4222"},
			"nats://flag:4222", time.Second, "warn"},
		{"empty env is unset", nil, map[string]string{"HAIL_NATS_URL": ""}, config.DefaultNATSURL, time.Second, "info"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := defaults()
			if _, err := config.Load(cfg, config.Options{Name: "test", Args: tt.args, Getenv: env(tt.env)}); err != nil {
				t.Fatal(err)
			}
			if cfg.NATS.URL != tt.wantURL || cfg.Heartbeat.Interval != tt.wantIntv || cfg.Log.Level != tt.wantLvl {
				t.Errorf("got url %s interval %v level %s", cfg.NATS.URL, cfg.Heartbeat.Interval, cfg.Log.Level)
			}
			if cfg.Heartbeat.Missed != 3 || cfg.Prefix != "hail" {
				t.Errorf("untouched defaults changed: %+v", cfg)
			}
		})
	}
}

func TestErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown file key", []string{"--config", "testdata/unknown.yaml"}, nil, `unknown key "heartbeat.intervall"`},
		{"bad duration in file", []string{"--config", "testdata/bad_duration.yaml"}, nil, "heartbeat.interval"},
		{"bad duration in env", nil, map[string]string{"HAIL_HEARTBEAT_INTERVAL": "fast"}, "heartbeat.interval"},
		{"bad int flag", []string{"--heartbeat-missed", "three"}, nil, "heartbeat.missed"},
		{"validation", []string{"--heartbeat-interval", "-1s"}, nil, "heartbeat.interval: must be positive"},
		{"bad log level", []string{"--log-level", "loud"}, nil, "log.level"},
		{"bad url", []string{"--nats-url", "::"}, nil, "nats.url"},
		{"missing file", []string{"--config", "testdata/none.yaml"}, nil, "testdata/none.yaml"},
		{"unknown flag", []string{"--nope"}, nil, "nope"},
		{"stray argument", []string{"extra"}, nil, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Load(defaults(), config.Options{Name: "test", Args: tt.args, Getenv: env(tt.env)})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestHelpListsEnvAndFlags(t *testing.T) {
	var out bytes.Buffer
	_, err := config.Load(defaults(), config.Options{Name: "test", Args: []string{"-h"}, Output: &out})
	if !errors.Is(err, config.ErrHelp) {
		t.Fatalf("got %v, want ErrHelp", err)
	}
	for _, want := range []string{"-nats-url", "HAIL_NATS_URL", "-heartbeat-interval", "default 1s", "-print-config"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, out.String())
		}
	}
}

func TestPrintRoundTrips(t *testing.T) {
	cfg := defaults()
	cfg.Heartbeat.Interval = 1500 * time.Millisecond
	var out bytes.Buffer
	if err := config.Print(&out, cfg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "interval: 1.5s") {
		t.Errorf("printed config:\n%s", out.String())
	}
	path := filepath.Join(t.TempDir(), "printed.yaml")
	if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	back := &testConfig{}
	if _, err := config.Load(back, config.Options{Args: []string{"--config", path}}); err != nil {
		t.Fatal(err)
	}
	if *back != *cfg {
		t.Errorf("printed config loads as %+v, want %+v", back, cfg)
	}
}

func TestNames(t *testing.T) {
	if got := config.EnvName("heartbeat.reply_timeout"); got != "HAIL_HEARTBEAT_REPLY_TIMEOUT" {
		t.Errorf("EnvName = %s", got)
	}
	if got := config.FlagName("heartbeat.reply_timeout"); got != "heartbeat-reply-timeout" {
		t.Errorf("FlagName = %s", got)
	}
}

// Whatever a config file holds, Load answers with a config or an error,
// never a panic, and never a config that fails validation.
func FuzzConfigFile(f *testing.F) {
	for _, p := range []string{"testdata/good.yaml", "testdata/unknown.yaml", "testdata/bad_duration.yaml"} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("nats: [1,2]\n"))
	f.Add([]byte("heartbeat: {interval: 1}\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := defaults()
		if _, err := config.Load(cfg, config.Options{Args: []string{"--config", path}}); err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Load accepted a config that fails Validate: %v", err)
		}
	})
}
