package router_test

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/internal/fakeinst"
)

// An instance sees the reply subject of each request it serves. Replies
// it forges from it, for the tokens around its own, answer none of the
// requests routed to other instances meanwhile: tokens are not counted.
func TestForgedRepliesAreNotTaken(t *testing.T) {
	e := newEnv(t)
	e.instance(fakeinst.Options{Delay: 30 * time.Millisecond})
	evilNC := e.Connect()
	evil := fakeinst.Start(t, e.URL, fakeinst.Options{Service: "evil", Conn: evilNC, Manual: true})
	var sprayed atomic.Int64
	if _, err := evilNC.Subscribe(subjects.InstOf("evil", evil.ID, "say", false), func(m *nats.Msg) {
		dot := strings.LastIndexByte(m.Reply, '.')
		token, err := strconv.ParseUint(m.Reply[dot+1:], 36, 64)
		if err != nil {
			return
		}
		for k := uint64(0); k < 60; k++ {
			if token+k >= 30 && k != 30 { // not its own
				_ = evilNC.Publish(m.Reply[:dot+1]+strconv.FormatUint(token+k-30, 36), []byte("FORGED"))
				sprayed.Add(1)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	evil.Announce()
	e.routable("echo", 1)
	e.routable("evil", 1)

	var forged, answered atomic.Int64
	var wg sync.WaitGroup
	done := make(chan struct{})
	for range 8 {
		wg.Go(func() {
			for range 25 {
				m, err := e.NC.Request(subjects.Route("echo", "say"), []byte("hi"), 5*time.Second)
				if err != nil {
					t.Errorf("routed request: %v", err)
					return
				}
				answered.Add(1)
				if string(m.Data) == "FORGED" {
					forged.Add(1)
				}
			}
		})
	}
	go func() {
		wg.Wait()
		close(done)
	}()
	for {
		select {
		case <-done:
			if forged.Load() > 0 {
				t.Errorf("%d of %d routed requests answered by the forger (%d forged replies sent)", forged.Load(), answered.Load(), sprayed.Load())
			}
			if sprayed.Load() == 0 {
				t.Error("the forger sent nothing: the test tried nothing")
			}
			return
		default:
		}
		if _, err := e.NC.Request(subjects.Route("evil", "say"), []byte("hi"), 5*time.Second); err != nil {
			t.Fatalf("request to the forger: %v", err)
		}
	}
}
