package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Validator is a message that can check itself after decoding.
type Validator interface {
	Validate() error
}

// CheckSize refuses a control message over MaxPayload.
func CheckSize(kind string, data []byte) error {
	if len(data) > MaxPayload {
		return fmt.Errorf("%s: %w", kind, invalid("payload of %d bytes exceeds the %d-byte limit", len(data), MaxPayload))
	}
	return nil
}

// Decode parses a JSON message of the named kind into v and validates it
// when v is a Validator. Every error wraps ErrInvalid and says which kind of
// message and which field was wrong.
func Decode(kind string, data []byte, v any) error {
	if err := CheckSize(kind, data); err != nil {
		return err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return fmt.Errorf("%s: %w", kind, invalid("payload is empty; want a JSON object"))
	}
	if !utf8.Valid(data) {
		return fmt.Errorf("%s: %w", kind, invalid("payload is not valid UTF-8"))
	}
	if problem := keyProblem(data, reflect.TypeOf(v)); problem != "" {
		return fmt.Errorf("%s: %w", kind, invalid("%s", problem))
	}
	if err := json.Unmarshal(data, v); err != nil {
		if errors.Is(err, ErrInvalid) {
			// A field's own decoder refused its value (Port).
			return fmt.Errorf("%s: %w", kind, err)
		}
		return fmt.Errorf("%s: %w", kind, invalid("malformed JSON: %s", jsonProblem(err)))
	}
	if val, ok := v.(Validator); ok {
		if err := val.Validate(); err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
	}
	return nil
}

// jsonProblem rewords encoding/json's errors to name the field in JSON terms.
func jsonProblem(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		return fmt.Sprintf("field %q: got JSON %s, want %s", typeErr.Field, typeErr.Value, jsonType(typeErr.Type.Kind().String()))
	}
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		return fmt.Sprintf("%s (at byte %d)", syntaxErr.Error(), syntaxErr.Offset)
	}
	return err.Error()
}

func jsonType(kind string) string {
	switch kind {
	case "int", "int64", "uint64", "int32", "uint32", "uint":
		return "an integer"
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "map", "struct":
		return "an object"
	case "bool":
		return "true or false"
	default:
		return kind
	}
}

// keyProblem walks data alongside t, the type it decodes into, and says
// what is wrong with its keys, or "" (also for data that is not JSON: the
// decoder says what is wrong with that). encoding/json matches keys to
// fields without case, keeps the last of two and takes null as absent,
// where the JSON Schemas match exactly, see both and refuse a null string:
// {"id":A,"ID":B} would pass a schema that checks id and decode as B. So
// a key twice in one object (without regard to case), a key that names a
// field in another case, a null field, a missing required field (tagged
// hail:"required", as the schema's "required") and an empty one that may
// not be (hail:"nonempty") are refused, and
// what this decoder accepts, the schema accepts as sent.
func keyProblem(data []byte, t reflect.Type) string {
	dec := json.NewDecoder(bytes.NewReader(data))
	problem, _ := walkKeys(dec, t, "", false)
	return problem
}

// walkKeys reads one value of type t (nil: unknown, only duplicates are
// looked for) at path; stop is true when a problem or a syntax error ends
// the walk.
func walkKeys(dec *json.Decoder, t reflect.Type, path string, nonempty bool) (problem string, stop bool) {
	tok, err := dec.Token()
	if err != nil {
		return "", true
	}
	if tok == nil && t != nil && path != "" {
		return fmt.Sprintf("%s is null; leave it out or give it a value", strings.TrimSuffix(path, ".")), true
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if nonempty && tok == "" {
		return fmt.Sprintf("%s is empty; leave it out or give it a value", strings.TrimSuffix(path, ".")), true
	}
	if t == timeType {
		if s, ok := tok.(string); !ok || !rfc3339.MatchString(s) {
			return fmt.Sprintf("%s is not an RFC 3339 timestamp like 2026-12-02T10:00:00Z", strings.TrimSuffix(path, ".")), true
		}
	}
	if t != nil && reflect.PointerTo(t).Implements(unmarshalerType) {
		t = nil // its own decoder (a timestamp, a port) checks it
	}
	switch tok {
	case json.Delim('{'):
		var fields *fieldSet
		var elem reflect.Type
		if t != nil {
			switch t.Kind() {
			case reflect.Struct:
				fields = fieldsOf(t)
			case reflect.Map:
				elem = t.Elem()
			}
		}
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return "", true
			}
			key, _ := k.(string)
			low := strings.ToLower(key)
			if seen[low] {
				return fmt.Sprintf("key %q appears twice (keys are matched without case)", truncate(path+key)), true
			}
			seen[low] = true
			vt, nonempty := elem, false
			if fields != nil {
				f, ok := fields.byName[key]
				if !ok {
					if name := fields.folded(key); name != "" {
						return fmt.Sprintf("key %q is not %q (keys are case-sensitive)", truncate(path+key), path+name), true
					}
				}
				vt, nonempty = f.t, f.nonempty
			}
			if p, stop := walkKeys(dec, vt, path+key+".", nonempty); stop {
				return p, true
			}
		}
		if _, err := dec.Token(); err != nil {
			return "", true
		}
		if fields != nil {
			for _, name := range fields.required {
				if !seen[strings.ToLower(name)] {
					return fmt.Sprintf("%s%s is required", path, name), true
				}
			}
		}
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if p, stop := walkKeys(dec, elem, fmt.Sprintf("%s[%d].", strings.TrimSuffix(path, "."), i), false); stop {
				return p, true
			}
		}
		if _, err := dec.Token(); err != nil {
			return "", true
		}
	}
	return "", false
}

var (
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	timeType        = reflect.TypeFor[time.Time]()
	// rfc3339 is the shape time.Time's decoder should insist on and does
	// not quite (it takes a one-digit hour); its ranges it checks itself.
	rfc3339 = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$`)
)

// fieldSet is a struct's JSON keys, embedded structs' included.
type fieldSet struct {
	byName   map[string]field
	names    []string
	required []string
}

// folded is the field name key matches only without case, or "".
func (f *fieldSet) folded(key string) string {
	for _, name := range f.names {
		if strings.EqualFold(name, key) {
			return name
		}
	}
	return ""
}

// field is one key's type and whether "" is refused for it (tagged
// hail:"nonempty": the schema has no empty value for it, where Go would
// take "" as absent).
type field struct {
	t        reflect.Type
	nonempty bool
}

var fieldSets sync.Map // reflect.Type -> *fieldSet

func fieldsOf(t reflect.Type) *fieldSet {
	if f, ok := fieldSets.Load(t); ok {
		return f.(*fieldSet)
	}
	f := &fieldSet{byName: map[string]field{}}
	addFields(f, t)
	fieldSets.Store(t, f)
	return f
}

func addFields(f *fieldSet, t reflect.Type) {
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if tag == "-" || (!sf.IsExported() && !sf.Anonymous) {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if sf.Anonymous && name == "" && sf.Type.Kind() == reflect.Struct {
			addFields(f, sf.Type)
			continue
		}
		if name == "" {
			name = sf.Name
		}
		rules := strings.Split(sf.Tag.Get("hail"), ",")
		f.byName[name] = field{t: sf.Type, nonempty: slices.Contains(rules, "nonempty")}
		f.names = append(f.names, name)
		if slices.Contains(rules, "required") {
			f.required = append(f.required, name)
		}
	}
}
