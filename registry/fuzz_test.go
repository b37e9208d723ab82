package registry

import (
	"testing"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/watch"
)

func FuzzSplitKey(f *testing.F) {
	f.Add("echo.0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a6b")
	f.Add("com.example.login.x")
	f.Add(".")
	f.Add("echo.")
	f.Fuzz(func(t *testing.T, key string) {
		service, id, ok := splitKey(key)
		if !ok {
			return
		}
		if service+"."+id != key || service == "" || id == "" {
			t.Fatalf("splitKey(%q) = %q, %q", key, service, id)
		}
	})
}

// Whatever hail_remote holds, the follower keeps only valid records under
// their own keys, each in a region named by one valid token.
func FuzzRemoteApply(f *testing.F) {
	rec := `{"id":"0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a6b","service":"echo","endpoints":[{"name":"say"}],"weight":100,` +
		`"status":"passing","node":"0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a6c","registered_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}`
	f.Add("eu.echo.0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a6b", []byte(rec), false)
	f.Add("eu.other.0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a6b", []byte(rec), false)
	f.Add("EU.echo.0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a6b", []byte(rec), false)
	f.Add("echo.0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a6b", []byte(rec), true)
	f.Add(".", []byte("{}"), false)
	f.Fuzz(func(t *testing.T, key string, value []byte, deleted bool) {
		r := NewRemote(nil, RemoteConfig{})
		r.apply(watch.Entry{Key: key, Value: value, Rev: 1, Deleted: deleted})
		r.Each(func(region string, rec events.InstanceRecord, _ uint64) {
			if events.ValidateRegion(region) != nil || region+"."+rec.Key() != key {
				t.Fatalf("entry %q kept as %s's %s", key, region, rec.Key())
			}
		})
	})
}
