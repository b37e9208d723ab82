package config_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hailsd/hail/config"
)

// squashedConfig declares its shared sections as the programs do: Common
// embedded with koanf:",squash", and beside it a section of its own that
// embeds another struct squashed.
type squashedConfig struct {
	config.Common `koanf:",squash"`
	HTTP          config.HTTP `koanf:"http"`
	Timing        timing      `koanf:"timing"`
}

type timing struct {
	heartbeatSection `koanf:",squash"`
	Jitter           bool `koanf:"jitter"`
}

func squashedDefaults() *squashedConfig {
	return &squashedConfig{Common: config.DefaultCommon()}
}

// The keys of a squashed embedded struct are the embedding struct's own:
// their flags, environment variables, file keys and --print-config are
// those of a field declared in place.
func TestSquashedSectionKeys(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(*squashedConfig) error
	}{
		{"flag", []string{"--nats-url", "nats://flag:4222", "--log-level", "debug", "--timing-missed", "4"}, nil, func(c *squashedConfig) error {
			if c.NATS.URL != "nats://flag:4222" || c.Log.Level != "debug" || c.Timing.Missed != 4 {
				return fmt.Errorf("got %+v", c)
			}
			return nil
		}},
		{"env", nil, map[string]string{"HAIL_PREFIX": "acme", "HAIL_LOG_FORMAT": "json", "HAIL_TIMING_INTERVAL": "2s"}, func(c *squashedConfig) error {
			if c.Prefix != "acme" || c.Log.Format != "json" || c.Timing.Interval.String() != "2s" {
				return fmt.Errorf("got %+v", c)
			}
			return nil
		}},
		// http.pprof is a key of the squashed Listener's section: a
		// boolean flag alone is true.
		{"http.pprof flag", []string{"--http-pprof", "--http-addr", "127.0.0.1:9"}, nil, func(c *squashedConfig) error {
			if !c.HTTP.Pprof || c.HTTP.Addr != "127.0.0.1:9" {
				return fmt.Errorf("got %+v", c.HTTP)
			}
			return nil
		}},
		{"http.pprof env", nil, map[string]string{"HAIL_HTTP_PPROF": "true", "HAIL_HTTP_TLS_CERT": "c.pem"}, func(c *squashedConfig) error {
			if !c.HTTP.Pprof || c.HTTP.TLS.Cert != "c.pem" {
				return fmt.Errorf("got %+v", c.HTTP)
			}
			return nil
		}},
		{"http.pprof default", nil, nil, func(c *squashedConfig) error {
			if c.HTTP.Pprof {
				return fmt.Errorf("got %+v, want profiles off", c.HTTP)
			}
			return nil
		}},
		{"file", []string{"--config", "testdata/squashed.yaml"}, nil, func(c *squashedConfig) error {
			if c.NATS.URL != "nats://file:4222" || c.Prefix != "file" || c.Timing.Missed != 7 {
				return fmt.Errorf("got %+v", c)
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := squashedDefaults()
			if _, err := config.Load(cfg, config.Options{Name: "test", Args: tt.args, Getenv: env(tt.env)}); err != nil {
				t.Fatal(err)
			}
			if err := tt.check(cfg); err != nil {
				t.Error(err)
			}
		})
	}

	var usage bytes.Buffer
	if _, err := config.Load(squashedDefaults(), config.Options{Name: "test", Args: []string{"--help"}, Output: &usage}); !errors.Is(err, config.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	var printed bytes.Buffer
	if err := config.Print(&printed, squashedDefaults()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-nats-url", "HAIL_NATS_INBOX_PREFIX", "-prefix", "-log-level", "-timing-missed", "HAIL_TIMING_JITTER", "-http-pprof", "HAIL_HTTP_PPROF", "HAIL_HTTP_ADDR"} {
		if !strings.Contains(usage.String(), want) {
			t.Errorf("usage has no %s:\n%s", want, usage.String())
		}
	}
	lines := strings.Split(printed.String(), "\n")
	for _, want := range []string{"nats:", "prefix: hail", "log:", "http:", "    pprof: false", "timing:", "    missed: 0"} {
		if !slices.Contains(lines, want) {
			t.Errorf("--print-config has no line %q:\n%s", want, printed.String())
		}
	}
	if strings.Contains(usage.String()+printed.String(), "Common") || strings.Contains(usage.String()+printed.String(), "heartbeatSection") {
		t.Errorf("an embedded struct's name became a key:\n%s\n%s", usage.String(), printed.String())
	}
}

// Common.Validate checks every shared section, naming each key.
func TestCommonValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*config.Common)
		want []string
	}{
		{"defaults", func(*config.Common) {}, nil},
		{"each section", func(c *config.Common) { c.NATS.URL, c.Prefix, c.Log.Level = "foo", "a b", "loud" },
			[]string{"nats.url:", "prefix:", "log.level:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.DefaultCommon()
			tt.edit(&c)
			err := c.Validate()
			if (err != nil) != (tt.want != nil) {
				t.Fatalf("got %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v does not name %s", err, w)
				}
			}
		})
	}
}

// Section names the keys of a package's validation as the program's.
func TestSection(t *testing.T) {
	inner := errors.New("is negative")
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"one", fmt.Errorf("base: %w", inner), "ejection.base: is negative"},
		{"joined", errors.Join(errors.New("base: 0s must be positive"), errors.New("max_share: 2 is out of range")),
			"ejection.base: 0s must be positive\nejection.max_share: 2 is out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := config.Section("ejection", tt.err)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("got %v", err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
	if !errors.Is(config.Section("ejection", fmt.Errorf("base: %w", inner)), inner) {
		t.Error("the package's error is not wrapped")
	}
}
