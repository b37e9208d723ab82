package registry

import "testing"

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
