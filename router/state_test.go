package router

import (
	"testing"
	"time"
)

func TestRetryBudget(t *testing.T) {
	var b retryBudget
	b.init(0.2, 10)
	// A calm start banks ten seconds of the floor (100) plus one.
	n := 0
	for b.withdraw() {
		n++
		if n > 1000 {
			t.Fatal("budget never runs out")
		}
	}
	if n != 101 {
		t.Fatalf("%d retries from a full budget, want 101", n)
	}
	// Five requests earn one retry (ratio 0.2).
	for range 5 {
		b.deposit()
	}
	if !b.withdraw() {
		t.Fatal("five requests did not earn a retry")
	}
	if b.withdraw() {
		t.Fatal("a sixth retry without requests or time")
	}
}

func TestEjectionShareAndLift(t *testing.T) {
	s := newServiceState(Ejection{Base: time.Hour, Max: time.Hour, MaxShare: 0.5}, DefaultRoute())
	s.pickable.Store(3)
	a, b := newTarget("a", 100), newTarget("b", 100)
	if !s.eject(a) || !a.ejected() {
		t.Fatal("first ejection refused")
	}
	// Half of three is one: a second instance stays in.
	if s.eject(b) || b.ejected() {
		t.Fatal("ejected more than the share allows")
	}
	s.lift(a.load)
	if a.ejected() {
		t.Fatal("lift left the target out")
	}
	if !s.eject(b) {
		t.Fatal("after a lift another may go out")
	}
}
