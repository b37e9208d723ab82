package schemas_test

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/schemas"
)

func load(t testing.TB) *schemas.Set {
	t.Helper()
	set, err := schemas.Load()
	if err != nil {
		t.Fatalf("load schemas: %v", err)
	}
	return set
}

func samples(t *testing.T, kind, name string) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", kind, name, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string][]byte, len(paths))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = data
	}
	return out
}

// goDecoders are the Go rules for the messages discovery and the router read
// from outside; they must agree with the schemas on every golden sample.
var goDecoders = map[string]func([]byte) error{
	schemas.Announce:       func(b []byte) error { _, err := events.DecodeAnnounce(b); return err },
	schemas.Deregister:     func(b []byte) error { _, err := events.DecodeDeregister(b); return err },
	schemas.HeartbeatReply: func(b []byte) error { _, err := events.DecodeHeartbeatReply(b); return err },
	schemas.InstanceRecord: func(b []byte) error { _, err := events.DecodeInstanceRecord(b); return err },
	schemas.RouteConfig:    func(b []byte) error { _, err := events.DecodeRouteConfig(b); return err },
	schemas.InstancesQuery: func(b []byte) error { _, err := events.DecodeInstancesQuery(b); return err },
	schemas.ServicesQuery:  func(b []byte) error { _, err := events.DecodeServicesQuery(b); return err },
	schemas.HealthEvent:    func(b []byte) error { _, err := events.DecodeHealthEvent(b); return err },
	schemas.NodeRecord:     func(b []byte) error { _, err := events.DecodeNodeRecord(b); return err },
	schemas.NodeEvent:      func(b []byte) error { _, err := events.DecodeNodeEvent(b); return err },
	schemas.RouterStats:    func(b []byte) error { _, err := events.DecodeRouterStats(b); return err },
}

func TestGoldenSamples(t *testing.T) {
	set := load(t)
	for _, name := range set.Names() {
		if name == "defs" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			valid, invalid := samples(t, "valid", name), samples(t, "invalid", name)
			if len(valid) == 0 || len(invalid) == 0 {
				t.Fatalf("schema %s needs at least one valid and one invalid sample, have %d and %d", name, len(valid), len(invalid))
			}
			decode := goDecoders[name]
			for file, data := range valid {
				if err := set.Validate(name, data); err != nil {
					t.Errorf("valid/%s/%s rejected by schema: %v", name, file, err)
				}
				if decode != nil {
					if err := decode(data); err != nil {
						t.Errorf("valid/%s/%s rejected by Go rules: %v", name, file, err)
					}
				}
			}
			for file, data := range invalid {
				if err := set.Validate(name, data); err == nil {
					t.Errorf("invalid/%s/%s accepted by schema", name, file)
				}
				if decode != nil {
					if err := decode(data); err == nil {
						t.Errorf("invalid/%s/%s accepted by Go rules", name, file)
					}
				}
			}
		})
	}
}

// Messages the Go types produce must validate against their schemas.
func TestGoMessagesValidate(t *testing.T) {
	set := load(t)
	ann, err := events.DecodeAnnounce([]byte(`{"id":"0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a6b","service":"echo","endpoints":[{"name":"say"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	// The largest client id a server can give must encode within the
	// schema's bounds.
	ann.Conn = &events.Conn{Server: "NCXOZ7QE4FPGDIZEZ4B5UJJVTHHPWGV5IQZAMFYMDMYPOR3BSU6OZDQQ", Client: math.MaxUint64}
	rec := events.InstanceRecord{Announce: ann, Status: events.Passing, Node: "5b3e6a52-9d0c-4b8a-a1f2-3c4d5e6f7a8b"}
	tests := []struct {
		schema string
		msg    any
	}{
		{schemas.Announce, ann},
		{schemas.InstanceRecord, rec},
		{schemas.InstanceRecord, events.InstanceRecord{Announce: ann, Status: events.Passing, Node: rec.Node, Region: "us", Stale: true}},
		{schemas.ServicesQuery, events.ServicesQuery{Region: "*"}},
		{schemas.Instances, []events.InstanceRecord{rec}},
		{schemas.Ack, events.Ack{OK: true, ID: ann.ID, Node: rec.Node}},
		{schemas.Error, events.ErrorBody{Error: "bad", Code: 400}},
		{schemas.HealthEvent, events.HealthEvent{ID: ann.ID, Service: "echo", Status: events.Passing, Node: rec.Node}},
		{schemas.HealthEvent, events.HealthEvent{ID: ann.ID, Service: "echo", Status: events.Passing, Node: rec.Node, Region: "eu"}},
		{schemas.Heartbeat, events.Heartbeat{Node: rec.Node, Seq: 1}},
		{schemas.HeartbeatReply, events.HeartbeatReply{ID: ann.ID, Status: events.Passing}},
		{schemas.NodeRecord, events.NodeRecord{ID: rec.Node}},
		{schemas.Services, []events.ServiceSummary{{Service: "echo", Instances: 1, Passing: 1}}},
		{schemas.Services, []events.ServiceSummary{{Service: "echo", Instances: 1, Passing: 1, Region: "us", Stale: true}}},
		{schemas.RouteConfig, events.RouteConfig{Strategy: "hash"}},
		{schemas.RouterStats, events.RouterStats{Router: rec.Node, IntervalMS: 5000, Services: []events.ServiceStats{
			{Service: "echo", Calls: events.Traffic{Requests: 1, LatencyMS: []int64{0, 1}}, Instances: map[string]events.Traffic{ann.ID: {Requests: 1}}},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.schema, func(t *testing.T) {
			data, err := json.Marshal(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			if err := set.Validate(tt.schema, data); err != nil {
				t.Errorf("%s: %v\n%s", tt.schema, err, data)
			}
		})
	}
}

func TestValidateErrorNamesField(t *testing.T) {
	set := load(t)
	err := set.Validate(schemas.Announce, []byte(`{"id":"nope","service":"echo","endpoints":[{"name":"say"}]}`))
	if err == nil || !strings.Contains(err.Error(), "/id") {
		t.Fatalf("got %v, want an error naming /id", err)
	}
	if strings.Contains(err.Error(), schemas.BaseURL) {
		t.Errorf("error %q carries schema URLs", err)
	}
}

// Whatever the Go decoder accepts, once encoded again, the schema accepts:
// discovery never stores a record its own schema would reject.
func FuzzAnnounceAcceptedIsSchemaValid(f *testing.F) {
	for _, kind := range []string{"valid", "invalid"} {
		paths, _ := filepath.Glob(filepath.Join("testdata", kind, "announce", "*.json"))
		for _, p := range paths {
			data, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	set := load(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := events.DecodeAnnounce(data)
		if err != nil {
			return
		}
		out, err := json.Marshal(a)
		if err != nil {
			t.Fatalf("encode accepted announce: %v", err)
		}
		if err := set.Validate(schemas.Announce, out); err != nil {
			t.Fatalf("Go accepted %q but its encoding %s fails the schema: %v", data, out, err)
		}
	})
}

// What a Go decoder accepts, as sent (raw bytes, not re-encoded), its
// schema accepts: a key in another case, a key twice, a null or a missing
// required field cannot make the two read one message differently. The
// heartbeat reply is left out on purpose: PROTOCOL.md takes any reply,
// even an empty or partial one, as a sign of life, which its schema (what
// an instance should send) does not describe.
func FuzzDecodersAgreeWithSchemas(f *testing.F) {
	var kinds []string
	for name := range goDecoders {
		if name != schemas.HeartbeatReply {
			kinds = append(kinds, name)
		}
	}
	sort.Strings(kinds)
	for i, kind := range kinds {
		for _, dir := range []string{"valid", "invalid"} {
			paths, _ := filepath.Glob(filepath.Join("testdata", dir, kind, "*.json"))
			for _, p := range paths {
				data, err := os.ReadFile(p)
				if err != nil {
					f.Fatal(err)
				}
				f.Add(uint8(i), data)
			}
		}
	}
	set := load(f)
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		kind := kinds[int(which)%len(kinds)]
		if goDecoders[kind](data) != nil {
			return
		}
		if kind == schemas.InstancesQuery && len(bytes.TrimSpace(data)) == 0 {
			return // an empty query asks for everything (PROTOCOL.md): no JSON to validate
		}
		if err := set.Validate(kind, data); err != nil {
			t.Fatalf("%s: Go accepted %q, the schema refuses it: %v", kind, data, err)
		}
	})
}
