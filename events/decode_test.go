package events

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"unicode/utf8"
)

// The byte walk (JSON without a backslash) and the token walk give every
// valid message the same answer, for every kind of message read from
// outside.
func FuzzKeyWalksAgree(f *testing.F) {
	kinds := []reflect.Type{reflect.TypeFor[Announce](), reflect.TypeFor[InstanceRecord](), reflect.TypeFor[HeartbeatReply](),
		reflect.TypeFor[HealthEvent](), reflect.TypeFor[NodeRecord](), reflect.TypeFor[RouteConfig](), reflect.TypeFor[InstancesQuery]()}
	for _, s := range []string{
		`{"id":"` + testID + `","service":"echo","endpoints":[{"name":"say"}],"metadata":{"a":"1","A":"2"}}`,
		`{"id":"` + testID + `","ID":"x","status":"passing","inflight":3,"checks":[{"name":"h","kind":"http","status":"passing","since":"2026-12-02T10:00:00Z"}]}`,
		`{"id":null,"service":"","address":"","ts":"2026-12-02T1:00:00Z","weights":{"k":1},"Status":"x"}`,
		`[{"id":1},{"ſervice":"echo"},{"K":1,"k":2}]`, `{}`, `null`, `"x"`, `{"a":{"b":[1,2,{"c":null}]},"n":-1.5e3,"t":true}`,
	} {
		for i := range kinds {
			f.Add(uint8(i), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		// Decode refuses invalid UTF-8 before either walk.
		if bytes.IndexByte(data, '\\') >= 0 || !json.Valid(data) || !utf8.Valid(data) {
			return
		}
		typ := reflect.PointerTo(kinds[int(which)%len(kinds)])
		w := &byteWalk{b: data}
		fast, _ := w.value(typ, "", false)
		if slow := tokenKeyProblem(data, typ); fast != slow {
			t.Fatalf("%s %s: byte walk %q, token walk %q", typ, data, fast, slow)
		}
	})
}

// BenchmarkDecodeHeartbeatReply is the decode discovery does for every
// heartbeat answer.
func BenchmarkDecodeHeartbeatReply(b *testing.B) {
	data := []byte(`{"id":"` + testID + `","status":"passing","inflight":0}`)
	for b.Loop() {
		if _, err := DecodeHeartbeatReply(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKeyWalks compares the two walks on a heartbeat answer.
func BenchmarkKeyWalks(b *testing.B) {
	data := []byte(`{"id":"` + testID + `","status":"passing","inflight":0}`)
	typ := reflect.TypeFor[*HeartbeatReply]()
	b.Run("bytes", func(b *testing.B) {
		for b.Loop() {
			w := &byteWalk{b: data}
			w.value(typ, "", false)
		}
	})
	b.Run("tokens", func(b *testing.B) {
		for b.Loop() {
			tokenKeyProblem(data, typ)
		}
	})
}

// BenchmarkDecodeInstanceRecord is the decode every registry follower does
// for every change.
func BenchmarkDecodeInstanceRecord(b *testing.B) {
	data := []byte(`{"id":"` + testID + `","service":"swarm-1","endpoints":[{"name":"say"}],"weight":100,"scoped":true,"status":"passing","node":"` + testID + `","registered_at":"2026-12-02T10:00:00.123456789Z","updated_at":"2026-12-02T10:00:00.123456789Z"}`)
	for b.Loop() {
		if _, err := DecodeInstanceRecord(data); err != nil {
			b.Fatal(err)
		}
	}
}
