package events

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestDecodeAnnounce(t *testing.T) {
	const ok = `{"id":"` + testID + `","service":"echo","endpoints":[{"name":"say"}]}`
	tests := []struct {
		name, in, wantErr string
		wantWeight        int
	}{
		{"minimal gets default weight", ok, "", DefaultWeight},
		{"drain", `{"id":"` + testID + `","service":"echo","endpoints":[{"name":"say"}],"weight":0}`, "", 0},
		{"unknown fields ignored", `{"id":"` + testID + `","service":"echo","endpoints":[{"name":"say"}],"new":{"a":1}}`, "", DefaultWeight},
		{"malformed", `{"id":`, "malformed JSON", 0},
		{"empty", ``, "payload is empty", 0},
		{"array", `[]`, "malformed JSON", 0},
		{"missing id", `{"service":"echo","endpoints":[{"name":"say"}]}`, "id is required", 0},
		{"bad id", `{"id":"abc","service":"echo","endpoints":[{"name":"say"}]}`, "canonical UUID", 0},
		{"missing service", `{"id":"` + testID + `","endpoints":[{"name":"say"}]}`, "service is required", 0},
		{"wildcard service", `{"id":"` + testID + `","service":"ec.*","endpoints":[{"name":"say"}]}`, "wildcard", 0},
		{"missing endpoints", `{"id":"` + testID + `","service":"echo"}`, "endpoints is required", 0},
		{"bad endpoint", `{"id":"` + testID + `","service":"echo","endpoints":[{"name":"a b"}]}`, "endpoints[0]", 0},
		{"duplicate endpoint", `{"id":"` + testID + `","service":"echo","endpoints":[{"name":"a"},{"name":"a"}]}`, "listed twice", 0},
		{"weight type", `{"id":"` + testID + `","service":"echo","endpoints":[{"name":"say"}],"weight":"x"}`, `field "weight"`, 0},
		{"weight range", `{"id":"` + testID + `","service":"echo","endpoints":[{"name":"say"}],"weight":10001}`, "out of range", 0},
		{"oversized", `{"id":"` + testID + `","service":"echo","endpoints":[{"name":"say"}],"metadata":{"x":"` + strings.Repeat("y", MaxPayload) + `"}}`, "exceeds the 65536-byte limit", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := DecodeAnnounce([]byte(tt.in))
			checkErr(t, err, tt.wantErr)
			if err == nil && a.Weight != tt.wantWeight {
				t.Errorf("weight = %d, want %d", a.Weight, tt.wantWeight)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "announce: ") {
				t.Errorf("error %q does not name the message kind", err)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	ts := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	ann := Announce{ID: testID, Service: "echo", Version: "1.4.0", Endpoints: []Endpoint{{Name: "say"}},
		Weight: 0, AZ: "eu-west-1a", Hostname: "web-3", Metadata: map[string]string{"team": "edge"}, TS: ts}
	tests := []struct {
		name   string
		in     any
		decode func([]byte) (any, error)
	}{
		{"announce", ann, func(b []byte) (any, error) { return DecodeAnnounce(b) }},
		{"deregister", Deregister{ID: testID, Service: "echo", Reason: "shutdown"}, func(b []byte) (any, error) { return DecodeDeregister(b) }},
		{"record", InstanceRecord{Announce: ann, Status: Critical, Node: testNode, RegisteredAt: ts, UpdatedAt: ts.Add(time.Second)},
			func(b []byte) (any, error) { return DecodeInstanceRecord(b) }},
		{"reply", HeartbeatReply{ID: testID, Status: Warning, Inflight: 3, Capacity: 64}, func(b []byte) (any, error) { return DecodeHeartbeatReply(b) }},
		{"route", RouteConfig{Strategy: "hash", HashHeader: "X-User", Retries: new(2), TimeoutMS: 500, RetryOnTimeout: true, HashLoadFactor: 1.5, Weights: map[string]int{testID: 5}, ZoneAware: new(false)},
			func(b []byte) (any, error) { return DecodeRouteConfig(b) }},
		{"query", InstancesQuery{Service: "echo", Status: Passing}, func(b []byte) (any, error) { return DecodeInstancesQuery(b) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := json.Marshal(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tt.decode(data)
			if err != nil {
				t.Fatalf("decode %s: %v", data, err)
			}
			if !reflect.DeepEqual(got, tt.in) {
				t.Errorf("round trip of %s:\n got %+v\nwant %+v", data, got, tt.in)
			}
		})
	}
}

func TestRecordFlattensAnnounce(t *testing.T) {
	rec := InstanceRecord{Announce: Announce{ID: testID, Service: "echo", Endpoints: []Endpoint{{Name: "say"}}, Weight: 7}, Status: Passing}
	data, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "service", "endpoints", "weight", "status", "node", "registered_at", "updated_at"} {
		if _, ok := m[k]; !ok {
			t.Errorf("record JSON %s lacks top-level %q", data, k)
		}
	}
	if rec.Key() != "echo."+testID {
		t.Errorf("Key() = %q", rec.Key())
	}
}

func TestHealthEventKeepsEmptyPrevious(t *testing.T) {
	data, _ := json.Marshal(HealthEvent{ID: testID, Service: "echo", Status: Passing})
	if !strings.Contains(string(data), `"previous":""`) {
		t.Errorf("registration event %s lacks previous", data)
	}
}

func TestRouteConfigValidate(t *testing.T) {
	tests := []struct{ in, wantErr string }{
		{`{}`, ""},
		{`{"strategy":"p2c_ewma","retries":3,"timeout_ms":100}`, ""},
		{`{"strategy":"fastest"}`, "not one of"},
		{`{"retries":-1}`, "retries"},
		{`{"weights":{"web":1}}`, "not an instance id"},
		{`{"weights":{"` + testID + `":-5}}`, "out of range"},
		{`{"strategy":`, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := DecodeRouteConfig([]byte(tt.in))
			checkErr(t, err, tt.wantErr)
		})
	}
}

func TestDecodeInstancesQueryEmpty(t *testing.T) {
	for _, in := range []string{"", " ", "{}"} {
		q, err := DecodeInstancesQuery([]byte(in))
		if err != nil || q != (InstancesQuery{}) {
			t.Errorf("DecodeInstancesQuery(%q) = %+v, %v", in, q, err)
		}
	}
	if _, err := DecodeInstancesQuery([]byte(`{"status":"up"}`)); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad status: got %v", err)
	}
}

func FuzzDecodeAnnounce(f *testing.F) {
	f.Add([]byte(`{"id":"` + testID + `","service":"echo","endpoints":[{"name":"say"}],"weight":5}`))
	f.Add([]byte(`{"id":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := DecodeAnnounce(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if err := a.Validate(); err != nil {
			t.Fatalf("accepted announce fails Validate: %v", err)
		}
		out, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		b, err := DecodeAnnounce(out)
		if err != nil || !reflect.DeepEqual(a, b) {
			t.Fatalf("re-decode of %s: %+v, %v; want %+v", out, b, err, a)
		}
	})
}

func FuzzDecodeRouteConfig(f *testing.F) {
	f.Add([]byte(`{"strategy":"hash","weights":{"` + testID + `":1}}`))
	f.Add([]byte(`{"retries":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeRouteConfig(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config fails Validate: %v", err)
		}
	})
}

func FuzzDecodeDeregister(f *testing.F) {
	f.Add([]byte(`{"id":"` + testID + `","service":"echo"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := DecodeDeregister(data)
		if err == nil && d.Validate() != nil {
			t.Fatalf("accepted deregister fails Validate")
		}
	})
}

func TestInstancesQueryMatch(t *testing.T) {
	rec := InstanceRecord{Announce: Announce{ID: testID, Service: "com.example.login", Version: "1.2.0", AZ: "eu-west-1a"}, Status: Warning}
	tests := []struct {
		q    InstancesQuery
		want bool
	}{
		{InstancesQuery{}, true},
		{InstancesQuery{Service: "com.example.login"}, true},
		{InstancesQuery{Service: "com.example"}, false},
		{InstancesQuery{ServicePrefix: "com.example"}, true},
		{InstancesQuery{ServicePrefix: "com.other"}, false},
		{InstancesQuery{Version: "1.2.0", AZ: "eu-west-1a", Status: Warning}, true},
		{InstancesQuery{Version: "1.2"}, false},
		{InstancesQuery{AZ: "eu-west-1b"}, false},
		{InstancesQuery{Status: Passing}, false},
	}
	for _, tt := range tests {
		if got := tt.q.Match(rec); got != tt.want {
			t.Errorf("%+v.Match = %v, want %v", tt.q, got, tt.want)
		}
	}
}

// Anyone can `nats kv put` a record: what decodes is valid, wraps
// ErrInvalid when it does not, and survives its own encoding.
func FuzzDecodeInstanceRecord(f *testing.F) {
	f.Add([]byte(`{"id":"` + testID + `","service":"echo","endpoints":[{"name":"say"}],"weight":100,"status":"passing","node":"` + testID + `","registered_at":"2026-12-02T10:00:00Z","updated_at":"2026-12-02T10:00:00Z"}`))
	f.Add([]byte(`{"id":"` + testID + `","service":"echo","endpoints":[],"status":"up"}`))
	f.Add([]byte(`{"id":"` + testID + `","ID":"x","service":"echo"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeInstanceRecord(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("accepted record fails Validate: %v", err)
		}
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b, err := DecodeInstanceRecord(out)
		if err != nil || !reflect.DeepEqual(r, b) {
			t.Fatalf("re-decode of %s: %+v, %v; want %+v", out, b, err, r)
		}
	})
}

// A heartbeat reply comes from whatever answers hail.hb.<id>.
func FuzzDecodeHeartbeatReply(f *testing.F) {
	f.Add([]byte(`{"id":"` + testID + `","status":"passing","inflight":3,"capacity":64}`))
	f.Add([]byte(`{"status":"sleepy","inflight":-1}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeHeartbeatReply(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("accepted reply fails Validate: %v", err)
		}
		if r.Inflight < 0 || r.Capacity < 0 || (r.Status != "" && !r.Status.Valid()) {
			t.Fatalf("accepted reply %+v", r)
		}
	})
}

// The instances query is anyone's request to discovery; an accepted one
// can only name a valid service and status.
func FuzzDecodeInstancesQuery(f *testing.F) {
	f.Add([]byte(`{"service":"echo","status":"critical"}`))
	f.Add([]byte(`{"service_prefix":"com.","az":"a","version":"1"}`))
	f.Add([]byte(``))
	f.Add([]byte(`{"service":"ech>"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		q, err := DecodeInstancesQuery(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if q.Service != "" && ValidateService(q.Service) != nil {
			t.Fatalf("accepted query names service %q", q.Service)
		}
		if q.Status != "" && !q.Status.Valid() {
			t.Fatalf("accepted query names status %q", q.Status)
		}
	})
}

func TestAnnounceV11Fields(t *testing.T) {
	base := func() Announce {
		return Announce{ID: testID, Service: "web", Endpoints: []Endpoint{{Name: "hello"}}, Weight: 100}
	}
	check := func(name, kind string, s Status) CheckResult { return CheckResult{Name: name, Kind: kind, Status: s} }
	tests := []struct {
		name   string
		change func(*Announce)
		bad    string // part of the error; "" when valid
	}{
		{"no v1.1 field", func(*Announce) {}, ""},
		{"address and port", func(a *Announce) { a.Address, a.Port = "10.0.0.7", 8080 }, ""},
		{"host name address", func(a *Announce) { a.Address = "web-3.eu-west-1.internal" }, ""},
		{"IPv6 address", func(a *Announce) { a.Address = "2001:db8::1" }, ""},
		{"no endpoints with an address", func(a *Announce) { a.Endpoints, a.Address = []Endpoint{}, "127.0.0.1" }, ""},
		{"no endpoints without an address", func(a *Announce) { a.Endpoints = []Endpoint{} }, "endpoints is empty"},
		{"address with a space", func(a *Announce) { a.Address = "web 3" }, "cannot appear in a host name"},
		{"address with a leading hyphen", func(a *Announce) { a.Address = "-web" }, "neither an IP nor a host name"},
		{"address too long", func(a *Announce) { a.Address = strings.Repeat("a.", 127) + "a" }, "1..253 bytes"},
		{"port 0 is none", func(a *Announce) { a.Port = 0 }, ""},
		{"port too high", func(a *Announce) { a.Port = 65536 }, "out of range 1..65535"},
		{"port negative", func(a *Announce) { a.Port = -1 }, "out of range"},
		{"tags", func(a *Announce) { a.Tags = []string{"v1", "primary", "zone:a", "x.y_z-1"} }, ""},
		{"empty tag", func(a *Announce) { a.Tags = []string{""} }, "1..64"},
		{"tag with a slash", func(a *Announce) { a.Tags = []string{"a/b"} }, "not allowed"},
		{"33 tags", func(a *Announce) { a.Tags = slices.Repeat([]string{"t"}, 33) }, "at most 32"},
		{"status seed", func(a *Announce) { a.Status = Critical }, ""},
		{"status unknown", func(a *Announce) { a.Status = "sleepy" }, "not passing, warning or critical"},
		{"checks", func(a *Announce) {
			a.Checks = []CheckResult{check("health", CheckHTTP, Passing), check("port", CheckTCP, Critical)}
		}, ""},
		{"check kind unknown", func(a *Announce) { a.Checks = []CheckResult{check("x", "ping", Passing)} }, "kind"},
		{"check without name", func(a *Announce) { a.Checks = []CheckResult{check("", CheckTTL, Passing)} }, "check name"},
		{"check twice", func(a *Announce) {
			a.Checks = []CheckResult{check("x", CheckTTL, Passing), check("x", CheckTCP, Passing)}
		}, "listed twice"},
		{"check output 4096 characters", func(a *Announce) {
			c := check("x", CheckScript, Warning)
			c.Output = strings.Repeat("é", MaxCheckOutput)
			a.Checks = []CheckResult{c}
		}, ""},
		{"check output too long", func(a *Announce) {
			c := check("x", CheckScript, Warning)
			c.Output = strings.Repeat("x", MaxCheckOutput+1)
			a.Checks = []CheckResult{c}
		}, "exceeds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := base()
			tt.change(&a)
			data, err := json.Marshal(a)
			if err != nil {
				t.Fatal(err)
			}
			_, err = DecodeAnnounce(data)
			if tt.bad == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tt.bad != "" && (err == nil || !strings.Contains(err.Error(), tt.bad)) {
				t.Fatalf("error %v, want one saying %q", err, tt.bad)
			}
		})
	}
}

func TestCutOutput(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"short", 10, "short"},
		{"abcdef", 3, "abc"},
		{"aé", 2, "a"}, // é is two bytes: not split
		{"aé", 3, "aé"},
		{"日本", 4, "日"},
		{"日本", 2, ""},
	}
	for _, tt := range tests {
		if got := CutOutput(tt.in, tt.max); got != tt.want || !utf8.ValidString(got) {
			t.Errorf("CutOutput(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
	}
}

func TestWorstAndSameChecks(t *testing.T) {
	c := func(name string, s Status, out string) CheckResult {
		return CheckResult{Name: name, Kind: CheckTTL, Status: s, Output: out}
	}
	if got := WorstStatus(nil); got != Passing {
		t.Errorf("no checks: %s", got)
	}
	if got := WorstStatus([]CheckResult{c("a", Passing, ""), c("b", Warning, "")}); got != Warning {
		t.Errorf("passing+warning: %s", got)
	}
	if got := WorstStatus([]CheckResult{c("a", Warning, ""), c("b", Critical, ""), c("c", Passing, "")}); got != Critical {
		t.Errorf("with a critical: %s", got)
	}
	a := []CheckResult{c("a", Passing, "took 3ms"), c("b", Critical, "refused")}
	if !SameChecks(a, []CheckResult{c("b", Critical, "refused again"), c("a", Passing, "took 9ms")}) {
		t.Error("same statuses in another order with other output differ")
	}
	if SameChecks(a, []CheckResult{c("a", Passing, ""), c("b", Warning, "")}) {
		t.Error("a status change is not a difference")
	}
	if SameChecks(a, a[:1]) || SameChecks(a, []CheckResult{c("a", Passing, ""), c("z", Critical, "")}) {
		t.Error("a check gone or renamed is not a difference")
	}
}

func TestInstancesQueryTag(t *testing.T) {
	rec := InstanceRecord{Announce: Announce{ID: testID, Service: "web", Tags: []string{"v1", "primary"}}, Status: Passing}
	for tag, want := range map[string]bool{"": true, "v1": true, "primary": true, "v2": false} {
		q := InstancesQuery{Tag: tag}
		if got := q.Match(rec); got != want {
			t.Errorf("tag %q: match %v, want %v", tag, got, want)
		}
	}
	if _, err := DecodeInstancesQuery([]byte(`{"tag":"a b"}`)); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad tag: %v", err)
	}
}

func TestDiscoverSpread(t *testing.T) {
	tests := []struct {
		data string
		want time.Duration
	}{
		{`{}`, time.Second},
		{``, time.Second},
		{`not json`, time.Second},
		{`{"spread_ms":-5}`, time.Second},
		{`{"spread_ms":25000}`, 25 * time.Second},
		{`{"spread_ms":99999999999}`, MaxDiscoverSpread},
	}
	for _, tt := range tests {
		if got := DiscoverSpread([]byte(tt.data), time.Second); got != tt.want {
			t.Errorf("DiscoverSpread(%q) = %v, want %v", tt.data, got, tt.want)
		}
	}
	if got := DiscoverSpreadFor(50000); got != 25*time.Second {
		t.Errorf("spread for 50,000 = %v", got)
	}
	if got := DiscoverSpreadFor(10); got != time.Second {
		t.Errorf("spread for 10 = %v", got)
	}
}

// The attack of the [security] issue: {"id":A,"ID":B} passed the schema's
// check of id and decoded as B. Case-variant duplicates anywhere, and
// invalid UTF-8, are refused.
func TestDuplicateKeysAndUTF8Refused(t *testing.T) {
	const other = "0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a99"
	tests := []struct {
		name, data string
		bad        string
	}{
		{"id and ID", `{"id":"` + testID + `","ID":"` + other + `","service":"echo","endpoints":[{"name":"say"}]}`, "appears twice"},
		{"same key twice", `{"id":"` + testID + `","service":"echo","service":"echo","endpoints":[{"name":"say"}]}`, "appears twice"},
		{"nested", `{"id":"` + testID + `","service":"echo","endpoints":[{"name":"say","NAME":"x"}]}`, "appears twice"},
		{"invalid UTF-8", "{\"id\":\"" + testID + "\",\"service\":\"echo\",\"version\":\"\xff\",\"endpoints\":[{\"name\":\"say\"}]}", "UTF-8"},
		{"fine", `{"id":"` + testID + `","service":"echo","endpoints":[{"name":"say"}],"metadata":{"a":"1","b":"2"}}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeAnnounce([]byte(tt.data))
			if tt.bad == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tt.bad != "" && (err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.bad)) {
				t.Fatalf("error %v, want one saying %q", err, tt.bad)
			}
		})
	}
}

// fuzzDecoder checks a decoder of what anyone on the bus may send: what it
// accepts is valid and survives its own encoding; what it refuses wraps
// ErrInvalid.
func fuzzDecoder[T any, P interface {
	*T
	Validator
}](f *testing.F, decode func([]byte) (T, error), seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := decode(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if err := P(&v).Validate(); err != nil {
			t.Fatalf("accepted %q fails Validate: %v", data, err)
		}
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decode(out)
		if err != nil || !reflect.DeepEqual(v, again) {
			t.Fatalf("re-decode of %s: %+v, %v; want %+v", out, again, err, v)
		}
	})
}

// Health events steer the router and the console; anyone allowed on
// hail.health.> could send one.
func FuzzDecodeHealthEvent(f *testing.F) {
	fuzzDecoder(f, DecodeHealthEvent,
		`{"id":"`+testID+`","service":"echo","status":"critical","previous":"passing","node":"`+testID+`","ts":"2026-12-02T10:00:00Z"}`,
		`{"id":"`+testID+`","service":"echo","status":"deregistered","previous":"","node":"`+testID+`","ts":"2026-12-02T10:00:00.5+01:00"}`,
		`{"id":"`+testID+`","ID":"x","service":"echo","status":"critical","previous":"passing","node":null,"ts":"2026-12-02T1:00:00Z"}`)
}

// Node records decide who owns which instance: a forged one must not
// count.
func FuzzDecodeNodeRecord(f *testing.F) {
	fuzzDecoder(f, DecodeNodeRecord,
		`{"id":"`+testID+`","az":"a","hostname":"h","started_at":"2026-12-02T10:00:00Z","ts":"2026-12-02T10:00:01Z"}`,
		`{"id":"node-1","started_at":"2026-12-02T10:00:00Z"}`, `{"Id":"`+testID+`"}`)
}

// Node events show on the console.
func FuzzDecodeNodeEvent(f *testing.F) {
	fuzzDecoder(f, DecodeNodeEvent,
		`{"node":"`+testID+`","state":"self_preservation","reason":"r","ts":"2026-12-02T10:00:00Z"}`,
		`{"node":"`+testID+`","state":"asleep","ts":"2026-12-02T10:00:00Z"}`, `{"node":"`+testID+`","state":"normal"}`)
}

func FuzzDecodeRouterStats(f *testing.F) {
	fuzzDecoder(f, DecodeRouterStats,
		`{"router":"`+testID+`","ts":"2026-12-02T10:00:00Z","interval_ms":5000,"services":[{"service":"echo","calls":{"requests":2,"errors":0,"latency_ms":[0,2]},"instances":{"`+testID+`":{"requests":2,"errors":0}}}]}`,
		`{"router":"`+testID+`","ts":"2026-12-02T10:00:00Z","interval_ms":5000}`,
		`{"router":"`+testID+`","ts":"2026-12-02T10:00:00Z","interval_ms":-1}`,
		`{"router":"`+testID+`","ts":"2026-12-02T10:00:00Z","interval_ms":5000,"services":[{"service":"echo","calls":{"requests":1,"errors":0,"latency_ms":[-1]}}]}`)
}
