package config

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
)

// structProvider is a koanf provider of a config struct's values, a map
// per section, by the fields' koanf tags. It is what the defaults, the
// flags, the environment variables, --print-config and Watch enumerate
// the keys from. An embedded struct tagged koanf:",squash" gives its keys
// to the struct that embeds it, as koanf's Unmarshal takes them: that is
// how every program declares the shared sections (Common) once.
type structProvider struct{ cfg any }

func (p structProvider) Read() (map[string]any, error) {
	v := reflect.Indirect(reflect.ValueOf(p.cfg))
	if v.Kind() != reflect.Struct {
		return nil, fmt.Errorf("%T is not a struct with koanf tags", p.cfg)
	}
	return sectionMap(v), nil
}

func (p structProvider) ReadBytes() ([]byte, error) {
	return nil, errors.New("structProvider: read with Read")
}

// sectionMap is v, a struct, as a map of its keys.
func sectionMap(v reflect.Value) map[string]any {
	out := map[string]any{}
	for i, f := range slices.Collect(v.Type().Fields()) {
		name, opts, _ := strings.Cut(f.Tag.Get("koanf"), ",")
		fv := v.Field(i)
		// An embedded struct's exported fields are keys even when its
		// type is not exported, as Unmarshal sets them.
		if f.Anonymous && slices.Contains(strings.Split(opts, ","), "squash") {
			if fv = reflect.Indirect(fv); fv.Kind() == reflect.Struct {
				maps.Copy(out, sectionMap(fv))
			}
			continue
		}
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = value(fv)
	}
	return out
}

// value is v as a key holds it: a struct with fields is a section, a list
// or map of structs holds sections, anything else is itself.
func value(v reflect.Value) any {
	switch e := reflect.Indirect(v); e.Kind() {
	case reflect.Struct:
		if m := sectionMap(e); len(m) > 0 {
			return m
		}
	case reflect.Slice, reflect.Array:
		if !holdsStructs(e.Type().Elem()) {
			break
		}
		l := make([]any, e.Len())
		for i := range l {
			l[i] = value(e.Index(i))
		}
		return l
	case reflect.Map:
		if el := e.Type().Elem(); !holdsStructs(el) && !(el.Kind() == reflect.Slice && holdsStructs(el.Elem())) {
			break
		}
		m := make(map[string]any, e.Len())
		for it := e.MapRange(); it.Next(); {
			m[it.Key().String()] = value(it.Value())
		}
		return m
	}
	return v.Interface()
}

func holdsStructs(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct
}
