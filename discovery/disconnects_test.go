package discovery

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
)

// What the advisories' callback keeps for the loop: a server going away
// marks nothing, a bad advisory is counted, one connection twice is one
// entry, and beyond the bound advisories are dropped and counted.
func TestDisconnectsPending(t *testing.T) {
	adv := func(server string, client uint64, reason string) *nats.Msg {
		return &nats.Msg{Subject: "$SYS.ACCOUNT.HAIL.DISCONNECT", Data: fmt.Appendf(nil, `{"server":{"id":%q},"client":{"id":%d},"reason":%q}`, server, client, reason)}
	}
	tests := []struct {
		name    string
		msgs    []*nats.Msg
		pending map[events.Conn]string
		ignored uint64
		invalid uint64
	}{
		{"closed", []*nats.Msg{adv("N1", 7, "Client Closed")}, map[events.Conn]string{{Server: "N1", Client: 7}: "Client Closed"}, 0, 0},
		{"server shutdown", []*nats.Msg{adv("N1", 7, "Server Shutdown")}, map[events.Conn]string{}, 1, 0},
		{"twice coalesced", []*nats.Msg{adv("N1", 7, "Read Error"), adv("N1", 7, "Write Error")}, map[events.Conn]string{{Server: "N1", Client: 7}: "Write Error"}, 0, 0},
		{"not an advisory", []*nats.Msg{{Data: []byte(`{"client":{"id":7}}`)}}, map[events.Conn]string{}, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDisconnects(metrics.NewSet(), nats.Options{})
			hear := d.hear(slog.New(slog.DiscardHandler))
			for _, m := range tt.msgs {
				hear(m)
			}
			got, _ := d.takeAll()
			if fmt.Sprint(got) != fmt.Sprint(tt.pending) {
				t.Errorf("pending %v, want %v", got, tt.pending)
			}
			if d.ignored.Get() != tt.ignored || d.invalid.Get() != tt.invalid {
				t.Errorf("ignored %d, invalid %d; want %d, %d", d.ignored.Get(), d.invalid.Get(), tt.ignored, tt.invalid)
			}
		})
	}
	t.Run("bounded", func(t *testing.T) {
		d := newDisconnects(metrics.NewSet(), nats.Options{})
		hear := d.hear(slog.New(slog.DiscardHandler))
		for i := range maxPendingDisconnects + 10 {
			hear(adv("N1", uint64(i+1), "Client Closed"))
		}
		if got, _ := d.takeAll(); len(got) != maxPendingDisconnects {
			t.Errorf("%d pending, want %d", len(got), maxPendingDisconnects)
		}
		if d.dropped.Get() != 10 {
			t.Errorf("%d dropped, want 10", d.dropped.Get())
		}
	})
}
