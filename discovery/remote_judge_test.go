package discovery

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A source is fresh while it delivered or heartbeat within remote_stale,
// and stale when it never did, went quiet for longer, failed, or is gone.
func TestJudgeSource(t *testing.T) {
	const stale = 10 * time.Second
	for _, tc := range []struct {
		name string
		si   *jetstream.StreamSourceInfo
		want bool
	}{
		{"heartbeat just now", &jetstream.StreamSourceInfo{Active: 300 * time.Millisecond}, false},
		{"at the bound", &jetstream.StreamSourceInfo{Active: stale}, false},
		{"quiet too long", &jetstream.StreamSourceInfo{Active: stale + time.Millisecond}, true},
		{"never heard", &jetstream.StreamSourceInfo{Active: -1}, true},
		{"failed", &jetstream.StreamSourceInfo{Active: time.Second, Error: &jetstream.APIError{Code: 503, Description: "no responders"}}, true},
		{"no source", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := judgeSource(tc.si, stale).Stale; got != tc.want {
				t.Fatalf("stale = %v, want %v", got, tc.want)
			}
		})
	}
}
