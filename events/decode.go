package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
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
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return fmt.Errorf("%s: %w", kind, invalid("payload is empty; want a JSON object"))
	}
	if trimmed[0] != '{' {
		// encoding/json would take null as an empty message.
		return fmt.Errorf("%s: %w", kind, invalid("malformed JSON: the payload is not an object"))
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
// not be (hail:"nonempty") are refused, and what this decoder accepts,
// the schema accepts as sent.
//
// Most messages hold no backslash, so no escaped string: those are walked
// byte by byte (heartbeat replies come thousands a second); the others
// through encoding/json's tokens, which unescape keys. A fuzz test holds
// the two walks to the same answers.
func keyProblem(data []byte, t reflect.Type) string {
	if bytes.IndexByte(data, '\\') < 0 {
		w := &byteWalk{b: data}
		problem, _ := w.value(t, "", false)
		return problem
	}
	return tokenKeyProblem(data, t)
}

// tokenKeyProblem is keyProblem through encoding/json's tokens.
func tokenKeyProblem(data []byte, t reflect.Type) string {
	dec := json.NewDecoder(bytes.NewReader(data))
	problem, _ := walkKeys(dec, t, "", false)
	return problem
}

// checkValue applies the rules of one value to it: null where a field
// is, "" where one may not be empty, a timestamp's shape. It returns the
// type to walk into (nil: nothing more to check inside).
func checkValue(t reflect.Type, path string, nonempty, null bool, str *string) (reflect.Type, string) {
	if null && t != nil && path != "" {
		return nil, fmt.Sprintf("%s is null; leave it out or give it a value", strings.TrimSuffix(path, "."))
	}
	if nonempty && str != nil && *str == "" {
		return nil, fmt.Sprintf("%s is empty; leave it out or give it a value", strings.TrimSuffix(path, "."))
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == timeType {
		if str == nil || !isRFC3339(*str) {
			return nil, fmt.Sprintf("%s is not an RFC 3339 timestamp like 2026-12-02T10:00:00Z", strings.TrimSuffix(path, "."))
		}
	}
	if t != nil && decodesItself(t) {
		return nil, "" // its own decoder (a timestamp, a port) checks it
	}
	return t, ""
}

// selfDecoding caches decodesItself by type: asking reflect is most of
// a key walk's time otherwise (every value of every record).
var selfDecoding sync.Map // reflect.Type -> bool

// decodesItself reports whether *t has its own UnmarshalJSON.
func decodesItself(t reflect.Type) bool {
	if v, ok := selfDecoding.Load(t); ok {
		return v.(bool)
	}
	yes := reflect.PointerTo(t).Implements(unmarshalerType)
	selfDecoding.Store(t, yes)
	return yes
}

// object is one JSON object being walked: its keys so far and what they
// may be.
type object struct {
	fields *fieldSet
	elem   reflect.Type
	seen   []string // folded keys; few in a message, so a slice
	many   map[string]bool
}

// saw records a folded key and reports whether it was there already.
func (o *object) saw(folded string) bool {
	if o.many != nil {
		if o.many[folded] {
			return true
		}
		o.many[folded] = true
		return false
	}
	if slices.Contains(o.seen, folded) {
		return true
	}
	o.seen = append(o.seen, folded)
	if len(o.seen) > 16 { // a metadata map of many keys
		o.many = make(map[string]bool, 2*len(o.seen))
		for _, k := range o.seen {
			o.many[k] = true
		}
	}
	return false
}

func (o *object) has(folded string) bool {
	if o.many != nil {
		return o.many[folded]
	}
	return slices.Contains(o.seen, folded)
}

func newObject(t reflect.Type) *object {
	o := &object{}
	if t != nil {
		switch t.Kind() {
		case reflect.Struct:
			o.fields = fieldsOf(t)
		case reflect.Map:
			o.elem = t.Elem()
		}
	}
	return o
}

// key takes the next key and returns its value's type and rule.
func (o *object) key(key, path string) (reflect.Type, bool, string) {
	if o.saw(foldKey(key)) {
		return nil, false, fmt.Sprintf("key %q appears twice (keys are matched without case)", truncate(path+key))
	}
	if o.fields == nil {
		return o.elem, false, ""
	}
	f, ok := o.fields.byName[key]
	if !ok {
		if name := o.fields.folded(key); name != "" {
			return nil, false, fmt.Sprintf("key %q is not %q (keys are case-sensitive)", truncate(path+key), path+name)
		}
	}
	return f.t, f.nonempty, ""
}

// end says which required field is missing, if one is.
func (o *object) end(path string) string {
	if o.fields == nil {
		return ""
	}
	for _, name := range o.fields.required {
		if !o.has(foldKey(name)) {
			return fmt.Sprintf("%s%s is required", path, name)
		}
	}
	return ""
}

// foldKey is key with every character replaced by the smallest of its
// case-folding orbit, so that two keys fold alike exactly when
// strings.EqualFold says they are equal (as encoding/json matches them,
// K and the Kelvin sign included).
func foldKey(key string) string {
	ascii := true
	for i := 0; i < len(key); i++ {
		if c := key[i]; c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(key)
	}
	var b strings.Builder
	for _, r := range key {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b.WriteRune(least)
	}
	return b.String()
}

// walkKeys reads one value of type t (nil: unknown, only duplicates are
// looked for) at path; stop is true when a problem or a syntax error ends
// the walk.
func walkKeys(dec *json.Decoder, t reflect.Type, path string, nonempty bool) (problem string, stop bool) {
	tok, err := dec.Token()
	if err != nil {
		return "", true
	}
	var sp *string
	if str, isStr := tok.(string); isStr {
		sp = &str
	}
	t, problem = checkValue(t, path, nonempty, tok == nil, sp)
	if problem != "" {
		return problem, true
	}
	switch tok {
	case json.Delim('{'):
		o := newObject(t)
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return "", true
			}
			key, _ := k.(string)
			vt, ne, problem := o.key(key, path)
			if problem != "" {
				return problem, true
			}
			if p, stop := walkKeys(dec, vt, path+key+".", ne); stop {
				return p, true
			}
		}
		if _, err := dec.Token(); err != nil {
			return "", true
		}
		if p := o.end(path); p != "" {
			return p, true
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

// byteWalk is the walk of JSON that holds no backslash, so no escape: a
// string ends at the next quote. It stops (with no problem) at anything
// that is not JSON, for the decoder to report.
type byteWalk struct {
	b []byte
	i int
}

func (w *byteWalk) ws() {
	for w.i < len(w.b) && (w.b[w.i] == ' ' || w.b[w.i] == '\t' || w.b[w.i] == '\n' || w.b[w.i] == '\r') {
		w.i++
	}
}

// str reads a string at w.i.
func (w *byteWalk) str() (string, bool) {
	if w.i >= len(w.b) || w.b[w.i] != '"' {
		return "", false
	}
	end := bytes.IndexByte(w.b[w.i+1:], '"')
	if end < 0 {
		return "", false
	}
	s := string(w.b[w.i+1 : w.i+1+end])
	w.i += end + 2
	return s, true
}

// scalarPath stands for a scalar member's path while nothing is found
// wrong with it (a member's path is never empty): building every key's
// path was most of the walk's allocations. A scalar found wrong is
// walked again with its real path, for the message.
const scalarPath = "."

// member reads the value of an object's key or an array's element, whose
// path is path().
func (w *byteWalk) member(t reflect.Type, nonempty bool, path func() string) (problem string, stop bool) {
	w.ws()
	if w.i < len(w.b) && (w.b[w.i] == '{' || w.b[w.i] == '[') {
		return w.value(t, path(), nonempty)
	}
	at := w.i
	problem, stop = w.value(t, scalarPath, nonempty)
	if problem != "" {
		w.i = at
		problem, stop = w.value(t, path(), nonempty)
	}
	return problem, stop
}

// value reads one value of type t at path, as walkKeys does.
func (w *byteWalk) value(t reflect.Type, path string, nonempty bool) (problem string, stop bool) {
	w.ws()
	if w.i >= len(w.b) {
		return "", true
	}
	c := w.b[w.i]
	var sp *string
	var str string
	if c == '"' {
		var ok bool
		if str, ok = w.str(); !ok {
			return "", true
		}
		sp = &str
	}
	null := c == 'n'
	t, problem = checkValue(t, path, nonempty, null, sp)
	if problem != "" {
		return problem, true
	}
	switch c {
	case '"':
		return "", false
	case '{':
		w.i++
		o := newObject(t)
		for first := true; ; first = false {
			w.ws()
			if w.i < len(w.b) && w.b[w.i] == '}' {
				w.i++
				break
			}
			if !first {
				if w.i >= len(w.b) || w.b[w.i] != ',' {
					return "", true
				}
				w.i++
				w.ws()
			}
			key, ok := w.str()
			if !ok {
				return "", true
			}
			w.ws()
			if w.i >= len(w.b) || w.b[w.i] != ':' {
				return "", true
			}
			w.i++
			vt, ne, problem := o.key(key, path)
			if problem != "" {
				return problem, true
			}
			if p, stop := w.member(vt, ne, func() string { return path + key + "." }); stop {
				return p, true
			}
		}
		if p := o.end(path); p != "" {
			return p, true
		}
	case '[':
		w.i++
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; ; i++ {
			w.ws()
			if w.i < len(w.b) && w.b[w.i] == ']' {
				w.i++
				break
			}
			if i > 0 {
				if w.i >= len(w.b) || w.b[w.i] != ',' {
					return "", true
				}
				w.i++
			}
			if p, stop := w.member(elem, false, func() string { return strings.TrimSuffix(path, ".") + "[" + strconv.Itoa(i) + "]." }); stop {
				return p, true
			}
		}
	default:
		// A number or a literal: up to the next delimiter.
		for w.i < len(w.b) {
			switch w.b[w.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return "", false
			}
			w.i++
		}
	}
	return "", false
}

var (
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	timeType        = reflect.TypeFor[time.Time]()
)

// isRFC3339 checks the shape time.Time's decoder should insist on and
// does not quite (it takes a one-digit hour):
// 2006-01-02T15:04:05[.frac](Z|±07:00); its ranges the decoder checks.
func isRFC3339(s string) bool {
	digits := func(from, n int) bool {
		if len(s) < from+n {
			return false
		}
		for i := from; i < from+n; i++ {
			if s[i] < '0' || s[i] > '9' {
				return false
			}
		}
		return true
	}
	if !digits(0, 4) || len(s) < 20 || s[4] != '-' || !digits(5, 2) || s[7] != '-' || !digits(8, 2) ||
		(s[10] != 'T' && s[10] != 't') || !digits(11, 2) || s[13] != ':' || !digits(14, 2) || s[16] != ':' || !digits(17, 2) {
		return false
	}
	i := 19
	if s[i] == '.' {
		j := i + 1
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j == i+1 {
			return false
		}
		i = j
	}
	switch rest := s[i:]; {
	case rest == "Z" || rest == "z":
		return true
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		return digits(i+1, 2) && digits(i+4, 2)
	}
	return false
}

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
