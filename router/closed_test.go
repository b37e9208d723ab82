package router

import "testing"

// An attempt that noted epoch e before it picked is caught only by a
// closing of its own instance after e: one from before e (the instance
// came back since) or of another instance lets it go.
func TestClosedSince(t *testing.T) {
	f := &forwarder{pending: map[uint64]*call{}, closed: closedConns{at: map[instanceRef]uint64{}}}
	a := map[instanceRef]struct{}{{"echo", "a"}: {}}
	f.closeAttempts(a) // epoch 1: a closed
	tests := []struct {
		name        string
		noted       uint64
		service, id string
		want        bool
	}{
		{"picked before a closed", 0, "echo", "a", true},
		{"picked after a closed", 1, "echo", "a", false},
		{"another instance", 0, "echo", "b", false},
		{"same id, another service", 0, "web", "a", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := f.closed.since(tt.noted, tt.service, tt.id); got != tt.want {
				t.Errorf("since(%d, %s, %s) = %v, want %v", tt.noted, tt.service, tt.id, got, tt.want)
			}
		})
	}
	// Closings are remembered for closedKeep epochs, then forgotten.
	for range closedKeep {
		f.closeAttempts(map[instanceRef]struct{}{{"echo", "b"}: {}})
	}
	if _, ok := f.closed.at[instanceRef{"echo", "a"}]; ok {
		t.Errorf("a closing %d epochs old is still remembered", closedKeep)
	}
	if !f.closed.since(1, "echo", "b") {
		t.Error("b's latest closing forgotten")
	}
}
