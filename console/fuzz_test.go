package console_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/hailsd/hail/events"
)

// Whatever the service name and body, a route write is either a 200 whose
// stored value is a valid RouteConfig, or a 400 that wrote nothing; never
// a 5xx.
func FuzzRouteWrite(f *testing.F) {
	for _, seed := range []struct{ service, body string }{
		{"echo", `{"strategy":"hash"}`},
		{"com.example.login", `{"weights":{"0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a6b":0}}`},
		{"echo", `{"strategy":"nope"}`},
		{"ec*o", `{}`},
		{"echo", `[`},
		{"echo", ``},
		{"echo", `{"retries":-1}`},
		{"a..b", `{}`},
	} {
		f.Add(seed.service, seed.body)
	}
	f.Fuzz(func(t *testing.T, service, body string) {
		e := newEnv(t)
		code, answer := e.Do(http.MethodPut, "/api/routes/"+url.PathEscape(service), body)
		switch code {
		case http.StatusOK:
			v, ok := e.Route(service)
			if !ok {
				t.Fatalf("200 %s but nothing stored", answer)
			}
			if _, err := events.DecodeRouteConfig([]byte(v)); err != nil {
				t.Fatalf("stored an invalid route %s: %v", v, err)
			}
		case http.StatusBadRequest, http.StatusNotFound, http.StatusMethodNotAllowed:
			keys, err := e.KV.Config.Keys(t.Context())
			if err == nil && len(keys) > 0 {
				t.Fatalf("%d answer but hail_config holds %v", code, keys)
			}
			if code == http.StatusBadRequest {
				var msg struct{ Error string }
				if json.Unmarshal([]byte(answer), &msg) != nil || msg.Error == "" {
					t.Fatalf("400 without an error message: %s", answer)
				}
			}
		default:
			t.Fatalf("answered %d: %s", code, answer)
		}
	})
}
