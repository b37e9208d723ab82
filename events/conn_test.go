package events

import (
	"strings"
	"testing"
	"unicode/utf8"
)

const testServer = "NCXOZ7QE4FPGDIZEZ4B5UJJVTHHPWGV5IQZAMFYMDMYPOR3BSU6OZDQQ"

// An advisory as nats-server 2.15 sends it (trimmed of its statistics).
const advisory = `{"type":"io.nats.server.advisory.v1.client_disconnect","id":"x","timestamp":"2026-12-07T04:00:00Z",
"server":{"name":"n1","host":"0.0.0.0","id":"` + testServer + `","ver":"2.15.2","seq":9,"jetstream":true,"time":"2026-12-07T04:00:00Z"},
"client":{"start":"2026-12-07T03:59:00Z","host":"127.0.0.1","id":42,"acc":"HAIL","user":"hail","lang":"go","ver":"1.55.0","rtt":"1ms","server":"n1","stop":"2026-12-07T04:00:00Z"},
"sent":{"msgs":1,"bytes":2},"received":{"msgs":3,"bytes":4},"reason":"Read Error"}`

func TestDecodeDisconnect(t *testing.T) {
	tests := []struct {
		name, data string
		want       Disconnect
		err        string
	}{
		{"advisory", advisory, Disconnect{Conn: Conn{Server: testServer, Client: 42}, User: "hail", Reason: "Read Error"}, ""},
		{"an identity's", `{"server":{"id":"N1"},"client":{"id":7,"user":"echo.` + testID + `"},"reason":"Client Closed"}`,
			Disconnect{Conn: Conn{Server: "N1", Client: 7}, User: "echo." + testID, Reason: "Client Closed"}, ""},
		{"user too long read as none", `{"server":{"id":"N1"},"client":{"id":7,"user":"` + strings.Repeat("u", MaxAdvisoryUser+1) + `"},"reason":"x"}`,
			Disconnect{Conn: Conn{Server: "N1", Client: 7}, Reason: "x"}, ""},
		{"no reason", `{"server":{"id":"N1"},"client":{"id":7}}`, Disconnect{Conn: Conn{Server: "N1", Client: 7}, Reason: "unknown"}, ""},
		{"long reason cut", `{"server":{"id":"N1"},"client":{"id":7},"reason":"` + strings.Repeat("é", 200) + `"}`,
			Disconnect{Conn: Conn{Server: "N1", Client: 7}, Reason: strings.Repeat("é", MaxDisconnectReason/2)}, ""},
		{"control characters dropped", `{"server":{"id":"N1"},"client":{"id":7},"reason":"a\nb\u0000c"}`, Disconnect{Conn: Conn{Server: "N1", Client: 7}, Reason: "abc"}, ""},
		{"no client", `{"server":{"id":"N1"},"reason":"x"}`, Disconnect{}, "conn.client"},
		{"client zero", `{"server":{"id":"N1"},"client":{"id":0}}`, Disconnect{}, "conn.client"},
		{"client negative", `{"server":{"id":"N1"},"client":{"id":-1}}`, Disconnect{}, "malformed"},
		{"no server", `{"client":{"id":7}}`, Disconnect{}, "conn.server"},
		{"server a subject", `{"server":{"id":"N1.>"},"client":{"id":7}}`, Disconnect{}, "conn.server"},
		{"server too long", `{"server":{"id":"` + strings.Repeat("N", 65) + `"},"client":{"id":7}}`, Disconnect{}, "conn.server"},
		{"not JSON", `nope`, Disconnect{}, "malformed"},
		{"oversized", `{"reason":"` + strings.Repeat("x", MaxPayload) + `"}`, Disconnect{}, "exceeds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeDisconnect([]byte(tt.data))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// Whatever an advisory holds, what is read of it is bounded: a valid
// conn and a short printable reason.
func FuzzDecodeDisconnect(f *testing.F) {
	f.Add([]byte(advisory))
	f.Add([]byte(`{"server":{"id":"N1"},"client":{"id":7},"reason":"\u0000\ud800"}`))
	f.Add([]byte(`{"server":{"id":""},"client":{"id":18446744073709551616}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := DecodeDisconnect(data)
		if err != nil {
			return
		}
		if err := d.Conn.Validate(); err != nil {
			t.Fatalf("accepted %q with an invalid conn: %v", data, err)
		}
		if len(d.User) > MaxAdvisoryUser || !utf8.ValidString(d.User) || strings.ContainsAny(d.User, "\n\r\x00") {
			t.Fatalf("accepted %q with user %q", data, d.User)
		}
		if d.Reason == "" || len(d.Reason) > MaxDisconnectReason || !utf8.ValidString(d.Reason) || strings.ContainsAny(d.Reason, "\n\r\x00") {
			t.Fatalf("accepted %q with reason %q", data, d.Reason)
		}
	})
}

// An advisory as nats-server 2.15 sends it for an identity (PROTOCOL
// v1.6), trimmed.
const connectAdvisory = `{"type":"io.nats.server.advisory.v1.client_connect","id":"y","timestamp":"2026-12-07T04:00:00Z",
"server":{"name":"n1","host":"0.0.0.0","id":"` + testServer + `","ver":"2.15.2","seq":8,"jetstream":true,"time":"2026-12-07T04:00:00Z"},
"client":{"start":"2026-12-07T04:00:00Z","host":"127.0.0.1","id":43,"acc":"HAIL","user":"echo.` + testID + `","name":"` + testID + `","lang":"go","ver":"1.55.0","kind":"Client","client_type":"nats"}}`

func TestDecodeConnect(t *testing.T) {
	tests := []struct {
		name, data string
		want       Connect
		err        string
	}{
		{"advisory", connectAdvisory, Connect{Conn: Conn{Server: testServer, Client: 43}, User: "echo." + testID}, ""},
		{"no user", `{"server":{"id":"N1"},"client":{"id":7}}`, Connect{Conn: Conn{Server: "N1", Client: 7}}, ""},
		{"user at the bound", `{"server":{"id":"N1"},"client":{"id":7,"user":"` + strings.Repeat("u", MaxAdvisoryUser) + `"}}`,
			Connect{Conn: Conn{Server: "N1", Client: 7}, User: strings.Repeat("u", MaxAdvisoryUser)}, ""},
		{"user too long read as none", `{"server":{"id":"N1"},"client":{"id":7,"user":"` + strings.Repeat("u", MaxAdvisoryUser+1) + `"}}`,
			Connect{Conn: Conn{Server: "N1", Client: 7}}, ""},
		{"user with a control character read as none", `{"server":{"id":"N1"},"client":{"id":7,"user":"echo.x\n"}}`, Connect{Conn: Conn{Server: "N1", Client: 7}}, ""},
		{"user not UTF-8 read as none", "{\"server\":{\"id\":\"N1\"},\"client\":{\"id\":7,\"user\":\"\xff\"}}", Connect{Conn: Conn{Server: "N1", Client: 7}}, ""},
		{"user not a string", `{"server":{"id":"N1"},"client":{"id":7,"user":7}}`, Connect{}, "malformed"},
		{"no client", `{"server":{"id":"N1"}}`, Connect{}, "conn.client"},
		{"client zero", `{"server":{"id":"N1"},"client":{"id":0}}`, Connect{}, "conn.client"},
		{"no server", `{"client":{"id":7}}`, Connect{}, "conn.server"},
		{"server a subject", `{"server":{"id":"N1.>"},"client":{"id":7}}`, Connect{}, "conn.server"},
		{"not JSON", `nope`, Connect{}, "malformed"},
		{"oversized", `{"client":{"user":"` + strings.Repeat("x", MaxPayload) + `"}}`, Connect{}, "exceeds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeConnect([]byte(tt.data))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one saying %q", err, tt.err)
				}
				if !strings.Contains(err.Error(), "connect advisory") {
					t.Errorf("err = %v, want it to name the connect advisory", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// Whatever a connect advisory holds, what is read of it is bounded: a
// valid conn and a short printable user, or none.
func FuzzDecodeConnect(f *testing.F) {
	f.Add([]byte(connectAdvisory))
	f.Add([]byte(`{"server":{"id":"N1"},"client":{"id":7,"user":"a\u0000\ud800"}}`))
	f.Add([]byte(`{"server":{"id":""},"client":{"id":18446744073709551616}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeConnect(data)
		if err != nil {
			return
		}
		if err := c.Conn.Validate(); err != nil {
			t.Fatalf("accepted %q with an invalid conn: %v", data, err)
		}
		if len(c.User) > MaxAdvisoryUser || !utf8.ValidString(c.User) || strings.ContainsAny(c.User, "\n\r\x00\x7f") {
			t.Fatalf("accepted %q with user %q", data, c.User)
		}
	})
}

func TestSameConn(t *testing.T) {
	a, b := &Conn{Server: "N1", Client: 1}, &Conn{Server: "N1", Client: 2}
	tests := []struct {
		x, y *Conn
		want bool
	}{
		{nil, nil, true}, {a, nil, false}, {nil, a, false}, {a, &Conn{Server: "N1", Client: 1}, true}, {a, b, false},
	}
	for _, tt := range tests {
		if got := SameConn(tt.x, tt.y); got != tt.want {
			t.Errorf("SameConn(%v, %v) = %v, want %v", tt.x, tt.y, got, tt.want)
		}
	}
}
