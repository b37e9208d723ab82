package discovery

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
)

// What the advisories' reader keeps for the loop: a server going away
// marks nothing, a bad advisory is counted, one connection twice is one
// entry, and beyond the bound advisories are dropped and counted.
func TestDisconnectsPending(t *testing.T) {
	adv := func(server string, client uint64, reason string) *nats.Msg {
		return &nats.Msg{Subject: "$SYS.ACCOUNT.HAIL.DISCONNECT", Data: fmt.Appendf(nil, `{"server":{"id":%q},"client":{"id":%d},"reason":%q}`, server, client, reason)}
	}
	newD := func() *disconnects {
		set := metrics.NewSet()
		return newDisconnects(set, nats.Options{}, newLiveConns(set, maxLiveConns))
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
			d := newD()
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
		d := newD()
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

// An identity's DISCONNECT, read with its CONNECTs in the order they came
// (PROTOCOL v1.6): one that leaves it another live connection is not kept
// for the loop; its last one is, as heard (the record's conn is not
// asked); one never heard connect is kept as unheard (the record's conn
// decides, v1.4).
func TestIdentityDisconnectsPending(t *testing.T) {
	const id = "2f0c3c1e-4a7b-5d2e-9f10-6b8a7c6d5e4f"
	key := events.InstanceKey("echo", id)
	adv := func(kind string, client uint64) *nats.Msg {
		return &nats.Msg{Subject: "$SYS.ACCOUNT.HAIL." + kind, Data: fmt.Appendf(nil, `{"server":{"id":"N1"},"client":{"id":%d,"user":"echo.%s"},"reason":"Client Closed"}`, client, id)}
	}
	conn := func(client uint64) events.Conn { return events.Conn{Server: "N1", Client: client} }
	tests := []struct {
		name           string
		msgs           []*nats.Msg
		who            map[events.Conn]closedIdentity
		stillConnected uint64
	}{
		{"never heard connect", []*nats.Msg{adv("DISCONNECT", 1)}, map[events.Conn]closedIdentity{conn(1): {key: key}}, 0},
		{"its one connection", []*nats.Msg{adv("CONNECT", 1), adv("DISCONNECT", 1)}, map[events.Conn]closedIdentity{conn(1): {key: key, heard: true}}, 0},
		{"the old of two", []*nats.Msg{adv("CONNECT", 1), adv("CONNECT", 2), adv("DISCONNECT", 1)}, map[events.Conn]closedIdentity{}, 1},
		{"both of two", []*nats.Msg{adv("CONNECT", 1), adv("CONNECT", 2), adv("DISCONNECT", 1), adv("DISCONNECT", 2)},
			map[events.Conn]closedIdentity{conn(2): {key: key, heard: true}}, 1},
		{"a bad connect is nothing", []*nats.Msg{{Subject: "$SYS.ACCOUNT.HAIL.CONNECT", Data: []byte(`{}`)}, adv("DISCONNECT", 1)},
			map[events.Conn]closedIdentity{conn(1): {key: key}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := metrics.NewSet()
			d := newDisconnects(set, nats.Options{}, newLiveConns(set, maxLiveConns))
			log := slog.New(slog.DiscardHandler)
			hear, hearConnect := d.hear(log), d.hearConnect(log)
			for _, m := range tt.msgs {
				if strings.HasSuffix(m.Subject, ".CONNECT") {
					hearConnect(m)
				} else {
					hear(m)
				}
			}
			_, who := d.takeAll()
			if fmt.Sprint(who) != fmt.Sprint(tt.who) {
				t.Errorf("pending identities %v, want %v", who, tt.who)
			}
			if got := d.stillConnected.Get(); got != tt.stillConnected {
				t.Errorf("%d still connected, want %d", got, tt.stillConnected)
			}
		})
	}
}
