package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
)

// NATS is the connection section every program has.
type NATS struct {
	// URL of the NATS server(s), comma-separated. Default nats://127.0.0.1:4222.
	URL string `koanf:"url"`
}

// DefaultNATSURL is where hail looks for NATS unless told otherwise.
const DefaultNATSURL = "nats://127.0.0.1:4222"

// Validate checks every URL in the list.
func (n NATS) Validate() error {
	if n.URL == "" {
		return FieldError("nats.url", "is empty")
	}
	for _, u := range strings.Split(n.URL, ",") {
		p, err := url.Parse(strings.TrimSpace(u))
		if err != nil || p.Host == "" {
			return FieldError("nats.url", "%q is not a URL like nats://host:4222", u)
		}
		switch p.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return FieldError("nats.url", "%q: scheme %q is not nats, tls, ws or wss", u, p.Scheme)
		}
	}
	return nil
}

// HTTP is where a program serves /metrics, /healthz and /readyz.
type HTTP struct {
	// Addr to listen on, like 127.0.0.1:8081; empty serves no HTTP.
	Addr string `koanf:"addr"`
}

// Log is the logging section every program has.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `koanf:"level"`
	// Format is text or json. Default text.
	Format string `koanf:"format"`
}

// Validate checks level and format.
func (l Log) Validate() error {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(l.Level)); err != nil {
		return FieldError("log.level", "%q is not debug, info, warn or error", l.Level)
	}
	if l.Format != "text" && l.Format != "json" {
		return FieldError("log.format", "%q is not text or json", l.Format)
	}
	return nil
}

// Logger builds the program's logger writing to w, at level; Watch
// changes level when the file's log.level changes.
func (l Log) Logger(w io.Writer, level *slog.LevelVar) (*slog.Logger, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(l.Level))
	level.Set(lv)
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// DefaultLog is info-level text.
var DefaultLog = Log{Level: "info", Format: "text"}

// HostPort returns the host:port of the first URL in a NATS URL list, for
// a program that serves NATS itself at that address.
func (n NATS) HostPort() (string, error) {
	first := strings.TrimSpace(strings.Split(n.URL, ",")[0])
	u, err := url.Parse(first)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("nats.url: %q is not a URL like nats://host:4222", first)
	}
	return u.Host, nil
}

// Program is a program's config: it names its log section.
type Program interface {
	Logging() Log
}

// Loaded is a program's loaded config: its logger, and what Watch needs
// to load the file again.
type Loaded struct {
	Log *slog.Logger
	// File is the config file, empty if none.
	File  string
	level *slog.LevelVar
	opts  Options
	// seen is the file as the config was loaded from it: an edit after
	// that differs from it, however soon Watch starts.
	seen []byte
}

// Start is the start of every program's run: load cfg and build the
// logger. When the command line asked only for help or for the merged
// config (then written to out), it returns nil and no error: the program
// is done.
func Start(cfg Program, name string, args []string, getenv func(string) string, out io.Writer) (*Loaded, error) {
	opts := Options{Name: name, Args: args, Getenv: getenv, Output: out}
	res, err := Load(cfg, opts)
	switch {
	case errors.Is(err, ErrHelp):
		return nil, nil
	case err != nil:
		return nil, err
	case res.PrintConfig:
		return nil, Print(out, cfg)
	}
	l := &Loaded{File: res.File, level: new(slog.LevelVar), opts: opts, seen: res.FileData}
	l.opts.Output = io.Discard // a reload parses the same flags again, silently
	if l.Log, err = cfg.Logging().Logger(out, l.level); err != nil {
		return nil, err
	}
	if res.File != "" {
		l.Log.Info("loaded config file", "file", res.File)
	}
	return l, nil
}
