package config

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/events"
)

// NATS is the connection section every program has: where, as whom, and
// how to trust the server. Secrets (password, token) are never printed:
// --print-config shows them as REDACTED, logs and errors show URLs
// without their password.
type NATS struct {
	// URL of the NATS server(s), comma-separated. Default nats://127.0.0.1:4222.
	URL string `koanf:"url"`
	// User and Password (or PasswordFile, read at start) authenticate as
	// a user. Default none.
	User         string `koanf:"user"`
	Password     string `koanf:"password"`
	PasswordFile string `koanf:"password_file"`
	// Token (or TokenFile) authenticates with a token. Default none.
	Token     string `koanf:"token"`
	TokenFile string `koanf:"token_file"`
	// NKey is an nkey seed file; Creds a JWT credentials file. Default none.
	NKey  string `koanf:"nkey"`
	Creds string `koanf:"creds"`
	// TLS trusts a private CA and presents a client certificate.
	TLS NATSTLS `koanf:"tls"`
	// InboxPrefix is the prefix of the program's reply subjects (PROTOCOL
	// v1.2: _INBOX.<role>). Default _INBOX.
	InboxPrefix string `koanf:"inbox_prefix"`
}

// NATSTLS are the files of a TLS connection to NATS.
type NATSTLS struct {
	// CA is a PEM file of the CA(s) to trust instead of the system's.
	CA string `koanf:"ca"`
	// Cert and Key are the client's certificate and key (PEM).
	Cert string `koanf:"cert"`
	Key  string `koanf:"key"`
}

// DefaultNATSURL is where hail looks for NATS unless told otherwise.
const DefaultNATSURL = "nats://127.0.0.1:4222"

// Redacted is what is printed of a secret.
const Redacted = bus.Redacted

// Validate checks every URL in the list, that one way of authenticating
// is chosen, and that the files named exist.
func (n NATS) Validate() error {
	var errs []error
	if n.URL == "" {
		errs = append(errs, FieldError("nats.url", "is empty"))
	}
	for _, u := range strings.Split(n.URL, ",") {
		if n.URL == "" {
			break
		}
		p, err := url.Parse(strings.TrimSpace(u))
		if err != nil || p.Host == "" {
			errs = append(errs, FieldError("nats.url", "%q is not a URL like nats://host:4222", bus.RedactURL(u)))
			continue
		}
		switch p.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			errs = append(errs, FieldError("nats.url", "%q: scheme %q is not nats, tls, ws or wss", bus.RedactURL(u), p.Scheme))
		}
	}
	ways := 0
	for _, set := range []bool{n.User != "", n.Token != "" || n.TokenFile != "", n.NKey != "", n.Creds != ""} {
		if set {
			ways++
		}
	}
	if ways > 1 {
		errs = append(errs, FieldError("nats", "choose one of user (with password), token, nkey and creds"))
	}
	if (n.Password != "" || n.PasswordFile != "") && n.User == "" {
		errs = append(errs, FieldError("nats.user", "is empty, but a password is set"))
	}
	if n.Password != "" && n.PasswordFile != "" {
		errs = append(errs, FieldError("nats.password_file", "and nats.password are both set; choose one"))
	}
	if n.Token != "" && n.TokenFile != "" {
		errs = append(errs, FieldError("nats.token_file", "and nats.token are both set; choose one"))
	}
	if (n.TLS.Cert == "") != (n.TLS.Key == "") {
		errs = append(errs, FieldError("nats.tls.cert", "and nats.tls.key go together"))
	}
	for key, file := range map[string]string{"nats.password_file": n.PasswordFile, "nats.token_file": n.TokenFile, "nats.nkey": n.NKey,
		"nats.creds": n.Creds, "nats.tls.ca": n.TLS.CA, "nats.tls.cert": n.TLS.Cert, "nats.tls.key": n.TLS.Key} {
		if file == "" {
			continue
		}
		if _, err := os.Stat(file); err != nil {
			errs = append(errs, FieldError(key, "%v", err))
		}
	}
	if n.InboxPrefix != "" && (strings.ContainsAny(n.InboxPrefix, " *>") || strings.HasSuffix(n.InboxPrefix, ".")) {
		errs = append(errs, FieldError("nats.inbox_prefix", "%q is not a subject prefix without wildcards", n.InboxPrefix))
	}
	return errors.Join(errs...)
}

// Connect connects a program as name with the section's options, waiting
// until connected or ctx ends (bus.Connect): every program's one way in.
func (n NATS) Connect(ctx context.Context, name string, log *slog.Logger) (*nats.Conn, error) {
	opts, err := n.Options()
	if err != nil {
		return nil, err
	}
	return bus.Connect(ctx, bus.ConnectOptions{URL: n.URL, Name: name, Logger: log, Extra: opts})
}

// Options are the nats.go options of the section: credentials (files read
// now), TLS, the inbox prefix.
func (n NATS) Options() ([]nats.Option, error) {
	var opts []nats.Option
	read := func(key, file string) (string, error) {
		data, err := os.ReadFile(file)
		if err != nil {
			return "", FieldError(key, "%v", err)
		}
		return strings.TrimSpace(string(data)), nil
	}
	switch {
	case n.User != "":
		pw := n.Password
		if n.PasswordFile != "" {
			var err error
			if pw, err = read("nats.password_file", n.PasswordFile); err != nil {
				return nil, err
			}
		}
		opts = append(opts, nats.UserInfo(n.User, pw))
	case n.Token != "" || n.TokenFile != "":
		tok := n.Token
		if n.TokenFile != "" {
			var err error
			if tok, err = read("nats.token_file", n.TokenFile); err != nil {
				return nil, err
			}
		}
		opts = append(opts, nats.Token(tok))
	case n.NKey != "":
		o, err := nats.NkeyOptionFromSeed(n.NKey)
		if err != nil {
			return nil, FieldError("nats.nkey", "%v", err)
		}
		opts = append(opts, o)
	case n.Creds != "":
		opts = append(opts, nats.UserCredentials(n.Creds))
	}
	if n.TLS.CA != "" {
		opts = append(opts, nats.RootCAs(n.TLS.CA))
	}
	if n.TLS.Cert != "" {
		opts = append(opts, nats.ClientCert(n.TLS.Cert, n.TLS.Key))
	}
	if n.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(n.InboxPrefix))
	}
	return opts, nil
}

// HTTP is where a program serves /metrics, /healthz and /readyz: the
// http section every program has.
type HTTP struct {
	Listener `koanf:",squash"`
	// Pprof also serves Go's profiles (net/http/pprof) under
	// /debug/pprof/ on Addr. Default false: a profile shows the
	// program's internals, and /debug/pprof/cmdline its arguments, to
	// whoever reaches the address.
	Pprof bool `koanf:"pprof"`
}

// Listener is an address a program serves HTTP on, with its TLS: the
// http section's, and those of other servers a program runs beside it
// (the router's ingress, the dev stack's consul).
type Listener struct {
	// Addr to listen on, like 127.0.0.1:8081; empty serves no HTTP.
	Addr string `koanf:"addr"`
	// TLS serves HTTPS when its cert and key are set.
	TLS HTTPTLS `koanf:"tls"`
}

// HTTPTLS is a server certificate and its key, PEM files.
type HTTPTLS struct {
	Cert string `koanf:"cert"`
	Key  string `koanf:"key"`
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
		return "", fmt.Errorf("nats.url: %q is not a URL like nats://host:4222", bus.RedactURL(first))
	}
	return u.Host, nil
}

// Program is a program's config: it names its log section. Embedding
// Logged or Common makes a config one.
type Program interface {
	Logging() Log
}

// Logged is the log section, which every program has. A program's Config
// embeds it, or Common, with koanf:",squash": the key stays log.*.
type Logged struct {
	Log Log `koanf:"log"`
}

// Logging is the log section.
func (l *Logged) Logging() Log { return l.Log }

// Common are the sections of every program that is part of a region: the
// connection to its NATS, the prefix of its subjects, the log. A
// program's Config embeds it with koanf:",squash", so that its keys stay
// nats.*, prefix and log.*.
type Common struct {
	NATS NATS `koanf:"nats"`
	// Prefix of every hail subject. Default hail.
	Prefix string `koanf:"prefix"`
	// Region is the program's region (PROTOCOL v1.5). Default: the
	// JetStream domain of the server it connects to, else local.
	Region string `koanf:"region"`
	Logged `koanf:",squash"`
}

// DefaultCommon connects to DefaultNATSURL with the default prefix and log.
func DefaultCommon() Common {
	return Common{NATS: NATS{URL: DefaultNATSURL}, Prefix: events.DefaultPrefix, Logged: Logged{Log: DefaultLog}}
}

// Validate checks the common sections; a program's Validate calls it
// beside its own keys' checks.
func (c *Common) Validate() error {
	errs := []error{c.NATS.Validate(), c.Log.Validate()}
	if _, err := events.NewSubjects(c.Prefix); err != nil {
		errs = append(errs, FieldError("prefix", "%v", err))
	}
	if c.Region != "" {
		if err := events.ValidateRegion(c.Region); err != nil {
			errs = append(errs, FieldError("region", "%v", err))
		}
	}
	return errors.Join(errs...)
}

// RegionOf is the program's region: the region key, else the JetStream
// domain of the server nc is connected to, else events.DefaultRegion. A
// domain that is no region's name (a server configured by hand) is an
// error naming it.
func (c *Common) RegionOf(nc *nats.Conn) (string, error) {
	if c.Region != "" {
		return c.Region, nil
	}
	d := nc.ConnectedDomain()
	if d == "" {
		return events.DefaultRegion, nil
	}
	if err := events.ValidateRegion(d); err != nil {
		return "", FieldError("region", "unset, and the server's JetStream domain is no region's name (set region): %v", err)
	}
	return d, nil
}

// Section is err, the validation of a section by the package that owns
// it (one error per wrong key, each starting with its key relative to the
// section), naming each key as the program does: name.key.
func Section(name string, err error) error {
	if err == nil {
		return nil
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var errs []error
		for _, e := range joined.Unwrap() {
			errs = append(errs, Section(name, e))
		}
		return errors.Join(errs...)
	}
	return fmt.Errorf("%s.%w", name, err)
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

// Loopback reports whether host (a name or an IP, no port) is reachable
// only from this machine: what a program may serve on without
// authentication.
func Loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
