package heartbeat

import (
	"testing"
	"time"
)

func TestReannounceAfter(t *testing.T) {
	most := func(d time.Duration) time.Duration { return d - 1 } // the top of the jitter
	none := func(time.Duration) time.Duration { return 0 }
	tests := []struct {
		interval time.Duration
		failed   int
		jitter   func(time.Duration) time.Duration
		want     time.Duration
	}{
		{time.Second, 0, most, 3 * time.Second}, // the first: three intervals, no jitter
		{time.Second, 1, none, 3 * time.Second},
		{time.Second, 1, most, 6*time.Second - 1},
		{time.Second, 2, most, 12*time.Second - 1},
		{time.Second, 4, most, 48*time.Second - 1},
		{time.Second, 5, most, time.Minute - 1}, // capped
		{time.Second, 40, most, time.Minute - 1},
		{30 * time.Second, 1, most, 90 * time.Second}, // three intervals already over the cap
	}
	for _, tt := range tests {
		if got := ReannounceAfter(tt.interval, tt.failed, tt.jitter); got != tt.want {
			t.Errorf("interval %v, %d failed: %v, want %v", tt.interval, tt.failed, got, tt.want)
		}
	}
}
