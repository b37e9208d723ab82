package router

import (
	"errors"
	"strings"
	"testing"
)

// Weights and keys come from outside (announces, hail_config, callers'
// headers): whatever they are, every strategy picks one of its targets,
// never one ruled out, and keeps its in-flight counts balanced.
func FuzzPickers(f *testing.F) {
	f.Add([]byte{100, 200, 44}, "user-1", uint8(0))
	f.Add([]byte{1}, "", uint8(1))
	f.Add([]byte{255, 1, 1, 1, 1, 1, 1, 7}, "k", uint8(3))
	f.Fuzz(func(t *testing.T, weights []byte, key string, avoidBits uint8) {
		if len(weights) == 0 || len(weights) > 64 {
			return
		}
		ws := make([]int, len(weights))
		for i, w := range weights {
			ws[i] = int(w)*40 + 1 // 1..10201, around the protocol's range
		}
		for _, s := range []string{"weighted", "hash", "round_robin", "random", "least_conn", "p2c_ewma"} {
			ts := targets(ws...)
			p, err := NewPicker(s, ts, 1.25)
			if err != nil {
				t.Fatal(err)
			}
			avoid := func(x *Target) bool {
				for i, y := range ts {
					if x == y {
						return i < 8 && avoidBits&(1<<i) != 0
					}
				}
				t.Fatalf("%s picked a target it was not given", s)
				return true
			}
			allAvoided := true
			for i := range ts {
				if !(i < 8 && avoidBits&(1<<i) != 0) {
					allAvoided = false
				}
			}
			for range 20 {
				got, err := p.Pick(key, avoid)
				if allAvoided {
					if !errors.Is(err, ErrNoInstance) {
						t.Fatalf("%s: every target ruled out, got %v, %v", s, got, err)
					}
					break
				}
				if err != nil {
					t.Fatalf("%s: %v", s, err)
				}
				if avoid(got) {
					t.Fatalf("%s picked a ruled-out target", s)
				}
				got.Done(Result{})
			}
			for _, x := range ts {
				if x.Inflight() != 0 {
					t.Fatalf("%s: target left with %d in flight", s, x.Inflight())
				}
			}
		}
	})
}

// Reply subjects come back from instances: a token is taken only in the
// spelling the router made, and every token it makes comes back.
func FuzzReplyToken(f *testing.F) {
	const inbox = "_INBOX.router.abc."
	for _, s := range []string{inbox + "1", inbox + "zz", inbox + "A", inbox + "01", inbox, "_INBOX.other.1", inbox + "1.2", inbox + "-1"} {
		f.Add(s, uint64(7))
	}
	f.Fuzz(func(t *testing.T, subject string, n uint64) {
		if got, ok := replyToken(replySubject(inbox, n), inbox); !ok || got != n {
			t.Fatalf("token %d did not come back: %d, %v", n, got, ok)
		}
		token, ok := replyToken(subject, inbox)
		if !ok {
			return
		}
		if !strings.HasPrefix(subject, inbox) || replySubject(inbox, token) != subject {
			t.Fatalf("took %q as token %d, which is spelled %q", subject, token, replySubject(inbox, token))
		}
	})
}
