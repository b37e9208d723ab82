// Package config loads a hail program's configuration in one order for
// every program: the defaults in its Config struct, then a YAML file, then
// HAIL_* environment variables, then command-line flags. Every key of the
// struct gets an environment variable and a flag derived from its name:
// nats.url is HAIL_NATS_URL and --nats-url.
package config

import (
	"errors"
	"flag"
	"fmt"
	"github.com/hailsd/hail/bus"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/v2"
)

// EnvPrefix starts every environment variable hail reads.
const EnvPrefix = "HAIL_"

// FileEnv names the config file when --config is not given.
const FileEnv = EnvPrefix + "CONFIG"

// ErrHelp is returned when the arguments asked for help; the usage has
// been written.
var ErrHelp = flag.ErrHelp

// Options are the program's surroundings, passed in so tests can set them.
type Options struct {
	Name   string   // program name, for usage
	Args   []string // command-line arguments without the program name
	Getenv func(string) string
	Output io.Writer // usage and flag errors
}

// Result says what else the command line asked for.
type Result struct {
	// File is the config file that was loaded, if any.
	File string
	// FileData is File's content as it was loaded: Watch tells an edit
	// by comparing with it.
	FileData []byte
	// PrintConfig is set by --print-config.
	PrintConfig bool
}

// Validator is implemented by configs that check themselves.
type Validator interface {
	Validate() error
}

// EnvName is the environment variable of a key.
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// FlagName is the flag of a key.
func FlagName(key string) string {
	return strings.NewReplacer(".", "-", "_", "-").Replace(key)
}

// Load fills cfg, a pointer to a struct with koanf tags already holding
// the defaults, and validates it.
func Load(cfg any, o Options) (Result, error) {
	var res Result
	k := koanf.New(".")
	if err := k.Load(structProvider{cfg}, nil); err != nil {
		return res, fmt.Errorf("load defaults: %w", err)
	}
	defaults := k.All()
	keys := slices.Sorted(maps.Keys(defaults))

	fs := flag.NewFlagSet(o.Name, flag.ContinueOnError)
	if o.Output != nil {
		fs.SetOutput(o.Output)
	} else {
		fs.SetOutput(io.Discard)
	}
	configFile := fs.String("config", "", "YAML config file (env "+FileEnv+")")
	fs.BoolVar(&res.PrintConfig, "print-config", false, "print the merged config and exit")
	byFlag := make(map[string]string, len(keys))
	for _, key := range keys {
		name := FlagName(key)
		byFlag[name] = key
		usage := fmt.Sprintf("%s (env %s, default %v)", key, EnvName(key), defaults[key])
		if _, isBool := defaults[key].(bool); isBool {
			fs.Var(&boolFlag{}, name, usage) // --insecure alone means true
			continue
		}
		fs.String(name, "", usage)
	}
	if err := fs.Parse(o.Args); err != nil {
		return res, err
	}
	if fs.NArg() > 0 {
		return res, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}

	getenv := o.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	res.File = *configFile
	if res.File == "" {
		res.File = getenv(FileEnv)
	}
	if res.File != "" {
		data, err := os.ReadFile(res.File)
		if err != nil {
			return res, fmt.Errorf("config file: %w", err)
		}
		fk := koanf.New(".")
		if err := fk.Load(rawBytes(data), yaml.Parser()); err != nil {
			return res, fmt.Errorf("config file %s: %w", res.File, err)
		}
		res.FileData = data
		for _, key := range fk.Keys() {
			if _, ok := defaults[key]; !ok {
				return res, fmt.Errorf("config file %s: unknown key %q", res.File, key)
			}
		}
		if err := k.Merge(fk); err != nil {
			return res, fmt.Errorf("config file %s: %w", res.File, err)
		}
	}

	env := map[string]any{}
	for _, key := range keys {
		if v, ok := lookup(getenv, EnvName(key)); ok {
			env[key] = textValue(defaults[key], v)
		}
	}
	if err := k.Load(confmap.Provider(env, "."), nil); err != nil {
		return res, fmt.Errorf("load environment: %w", err)
	}
	flags := map[string]any{}
	fs.Visit(func(f *flag.Flag) {
		if key, ok := byFlag[f.Name]; ok {
			flags[key] = textValue(defaults[key], f.Value.String())
		}
	})
	if err := k.Load(confmap.Provider(flags, "."), nil); err != nil {
		return res, fmt.Errorf("load flags: %w", err)
	}
	if err := k.UnmarshalWithConf("", cfg, koanf.UnmarshalConf{Tag: "koanf"}); err != nil {
		return res, fmt.Errorf("config: %w", err)
	}
	if v, ok := cfg.(Validator); ok {
		if err := v.Validate(); err != nil {
			return res, fmt.Errorf("config: %w", err)
		}
	}
	return res, nil
}

// textValue is the value of a key given as text (a variable, a flag): a
// key that holds a list takes a comma-separated one (HAIL_REMOTE_REGIONS=
// us,ap), as a file takes a YAML list; any other key the text itself.
func textValue(def any, text string) any {
	if _, ok := def.([]string); !ok {
		return text
	}
	out := []string{}
	for _, item := range strings.Split(text, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// rawBytes is a koanf provider of bytes already read.
type rawBytes []byte

func (b rawBytes) ReadBytes() ([]byte, error) { return b, nil }

func (b rawBytes) Read() (map[string]any, error) {
	return nil, errors.New("rawBytes: parse with a parser")
}

// lookup treats an empty variable as unset, as a shell's `VAR= cmd` means.
func lookup(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

// Print writes cfg as the YAML a config file would hold.
func Print(w io.Writer, cfg any) error {
	k := koanf.New(".")
	if err := k.Load(structProvider{cfg}, nil); err != nil {
		return err
	}
	// Durations print as text ("1s"), as they are written in files;
	// secrets never print.
	for key, v := range k.All() {
		if s, ok := v.(fmt.Stringer); ok {
			if err := k.Set(key, s.String()); err != nil {
				return err
			}
		}
		if s, ok := v.(string); ok && s != "" {
			switch {
			case strings.HasSuffix(key, "password") || strings.HasSuffix(key, "token"):
				_ = k.Set(key, Redacted)
			case strings.HasSuffix(key, "url"):
				_ = k.Set(key, bus.RedactURL(s))
			}
		}
		// Lists of sections (an agent's services and their checks) are
		// not flattened into keys: their secrets are found inside.
		if l, ok := v.([]any); ok {
			_ = k.Set(key, redactList(l))
		}
	}
	out, err := k.Marshal(yaml.Parser())
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

// redactList is l with the secrets in its sections redacted: values of
// keys named as secrets, the user info of URLs, and the values of secret
// headers (a check's header: Authorization: Bearer ...).
func redactList(l []any) []any {
	out := make([]any, len(l))
	for i, v := range l {
		switch x := v.(type) {
		case map[string]any:
			m := make(map[string]any, len(x))
			for k, e := range x {
				switch {
				case k == "header" || k == "headers":
					m[k] = redactHeader(e)
				case strings.HasSuffix(k, "password") || strings.HasSuffix(k, "token"):
					m[k] = redactAll(e)
				default:
					m[k] = redactList([]any{e})[0]
				}
			}
			out[i] = m
		case []any:
			out[i] = redactList(x)
		case string:
			out[i] = x
			if strings.Contains(x, "@") && strings.Contains(x, "://") {
				out[i] = bus.RedactURL(x)
			}
		default:
			out[i] = v
		}
	}
	return out
}

// redactHeader redacts the values of the headers that carry credentials
// in h, a header section (http.Header's type, or a map a file gave).
func redactHeader(h any) any {
	switch x := h.(type) {
	case map[string][]string:
		out := make(map[string][]string, len(x))
		for name, vs := range x {
			out[name] = vs
			if secretHeader(name) {
				out[name] = slices.Repeat([]string{Redacted}, len(vs))
			}
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for name, v := range x {
			out[name] = v
			if secretHeader(name) {
				out[name] = redactAll(v)
			}
		}
		return out
	}
	return redactAll(h)
}

// secretHeader reports whether an HTTP header called name carries a
// credential (Authorization, Proxy-Authorization, Cookie, X-Consul-Token,
// an API key...), so that its value is never printed.
func secretHeader(name string) bool {
	n := strings.ToLower(name)
	for _, s := range []string{"auth", "cookie", "token", "secret", "key", "password", "session"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// redactAll is v with every string in it Redacted.
func redactAll(v any) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = redactAll(e)
		}
		return out
	case []string:
		return slices.Repeat([]string{Redacted}, len(x))
	case string:
		return Redacted
	}
	return v
}

// FieldError names the config key that is wrong.
func FieldError(key, format string, args ...any) error {
	return fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...))
}

// boolFlag is a boolean key's flag: given alone it is true, and
// --key=false still says false.
type boolFlag struct{ v string }

func (b *boolFlag) String() string     { return b.v }
func (b *boolFlag) Set(s string) error { b.v = s; return nil }
func (b *boolFlag) IsBoolFlag() bool   { return true }
