package events

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// Conn names one client connection to one NATS server (PROTOCOL v1.4):
// the server's id (nats.go ConnectedServerId) and the client id the server
// gave the connection (GetClientID). An instance announces it, and again
// after every reconnect, so that its owner can mark it critical the moment
// the server says the connection closed.
type Conn struct {
	Server string `json:"server" hail:"required"`
	Client uint64 `json:"client" hail:"required"`
}

// MaxServerID bounds Conn.Server. A server id is an nkey public key, 56
// characters; the bound leaves room without letting a record grow.
const MaxServerID = 64

// Validate checks a conn: a server id of 1..64 letters and digits and a
// client id other than 0 (which the server never gives).
func (c *Conn) Validate() error {
	if !validServerID(c.Server) {
		return invalid("conn.server %q must be 1..%d letters and digits", truncate(c.Server), MaxServerID)
	}
	if c.Client == 0 {
		return invalid("conn.client must be a client id above 0")
	}
	return nil
}

func validServerID(s string) bool {
	if s == "" || len(s) > MaxServerID {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// SameConn reports whether a and b name the same connection (both absent
// counts as the same).
func SameConn(a, b *Conn) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// DisconnectAll is the subject discovery hears the servers' disconnect
// advisories on: $SYS.ACCOUNT.<account>.DISCONNECT of every account
// imported into hail's (PROTOCOL v1.4). It has no prefix: the server
// names it.
const DisconnectAll = "$SYS.ACCOUNT.*.DISCONNECT"

// ServerShutdownAll and ServerLameDuckAll are the subjects of a server
// going away, $SYS.SERVER.<server id>.SHUTDOWN and .LAMEDUCK, imported into
// hail's account beside DisconnectAll: discovery holds the judgement of
// the silence of that server's clients while they reconnect (PROTOCOL
// v1.4).
const (
	ServerShutdownAll = "$SYS.SERVER.*.SHUTDOWN"
	ServerLameDuckAll = "$SYS.SERVER.*.LAMEDUCK"
)

// ServerEvents are the servers' events imported into hail's account.
var ServerEvents = []string{DisconnectAll, ServerShutdownAll, ServerLameDuckAll}

// SysPublish is what no user of hail's account may publish: the server's
// own subjects, among them the disconnect advisories discovery acts on.
const SysPublish = "$SYS.>"

// ReasonServerShutdown is the disconnect reason of a server that goes
// away; its clients reconnect elsewhere, so it marks nothing.
const ReasonServerShutdown = "Server Shutdown"

// MaxDisconnectReason bounds the reason taken from an advisory; it ends up
// in a health event's reason.
const MaxDisconnectReason = 128

// Disconnect is what hail reads of the server's
// io.nats.server.advisory.v1.client_disconnect: which connection closed,
// and why. Everything else in the advisory is ignored.
type Disconnect struct {
	Conn   Conn
	Reason string
}

// disconnectAdvisory is the part of the advisory that is read.
type disconnectAdvisory struct {
	Server struct {
		ID string `json:"id"`
	} `json:"server"`
	Client struct {
		ID uint64 `json:"id"`
	} `json:"client"`
	Reason string `json:"reason"`
}

// DecodeDisconnect reads a disconnect advisory. The server alone should
// publish it, but the bytes are still outside input: size, ids and reason
// are bounded, and a reason that is not plain text is cut.
func DecodeDisconnect(data []byte) (Disconnect, error) {
	if err := CheckSize("disconnect advisory", data); err != nil {
		return Disconnect{}, err
	}
	var adv disconnectAdvisory
	if err := json.Unmarshal(data, &adv); err != nil {
		return Disconnect{}, invalid("disconnect advisory: malformed JSON: %s", jsonProblem(err))
	}
	d := Disconnect{Conn: Conn{Server: adv.Server.ID, Client: adv.Client.ID}, Reason: cleanReason(adv.Reason)}
	if err := d.Conn.Validate(); err != nil {
		return Disconnect{}, invalid("disconnect advisory: %v", err)
	}
	return d, nil
}

// cleanReason keeps a reason printable and at most MaxDisconnectReason
// bytes.
func cleanReason(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, s)
	s = CutOutput(s, MaxDisconnectReason)
	if s == "" {
		return "unknown"
	}
	return s
}

// DisconnectReason is the reason of the critical health event a
// disconnect writes.
func DisconnectReason(reason string) string { return "disconnected: " + reason }
