package health

import "testing"

// A gRPC answer comes from whatever listens on the checked port.
func FuzzCheckResponse(f *testing.F) {
	f.Add(frame([]byte{0x08, 0x01}))
	f.Add(frame([]byte{0x08, 0x02, 0x12, 0x01, 'x'}))
	f.Add([]byte{0, 0, 0, 0, 9, 8})
	f.Fuzz(func(t *testing.T, body []byte) {
		_, _ = checkResponse(body) // must not panic or hang
	})
}
