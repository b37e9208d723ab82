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

// ConnectAll is the subject of the servers' connect advisories,
// $SYS.ACCOUNT.<account>.CONNECT, imported into hail's account beside
// DisconnectAll: with identities (PROTOCOL v1.6) the advisory names the
// instance (client.user = <S>.<id>), so discovery knows each identity's
// live connections from the server rather than from its announces.
const ConnectAll = "$SYS.ACCOUNT.*.CONNECT"

// ServerEvents are the servers' events imported into hail's account.
var ServerEvents = []string{DisconnectAll, ConnectAll, ServerShutdownAll, ServerLameDuckAll}

// SysPublish is what no user of hail's account may publish: the server's
// own subjects, among them the disconnect advisories discovery acts on.
const SysPublish = "$SYS.>"

// ReasonServerShutdown is the disconnect reason of a server that goes
// away; its clients reconnect elsewhere, so it marks nothing.
const ReasonServerShutdown = "Server Shutdown"

// MaxDisconnectReason bounds the reason taken from an advisory; it ends up
// in a health event's reason.
const MaxDisconnectReason = 128

// MaxAdvisoryUser bounds the user taken from an advisory: an identity's
// is <service>.<id> (PROTOCOL v1.6), at most a service name, a dot and a
// 36-character id. A longer user is no identity, and is read as none.
const MaxAdvisoryUser = MaxServiceLen + 1 + 36

// Disconnect is what hail reads of the server's
// io.nats.server.advisory.v1.client_disconnect: which connection closed,
// as which user, and why. Everything else in the advisory is ignored.
type Disconnect struct {
	Conn   Conn
	User   string // "" when the advisory names none, or none readable
	Reason string
}

// Connect is what hail reads of the server's
// io.nats.server.advisory.v1.client_connect: which connection opened, as
// which user. Everything else in the advisory is ignored.
type Connect struct {
	Conn Conn
	User string // "" when the advisory names none, or none readable
}

// clientAdvisory is the part of a connect or disconnect advisory that is
// read (nats-server's ConnectEventMsg and DisconnectEventMsg).
type clientAdvisory struct {
	Server struct {
		ID string `json:"id"`
	} `json:"server"`
	Client struct {
		ID   uint64 `json:"id"`
		User string `json:"user"`
	} `json:"client"`
	Reason string `json:"reason"`
}

// decodeClientAdvisory reads what and kind ("connect advisory",
// "disconnect advisory") share: the size, the JSON and the conn.
func decodeClientAdvisory(kind string, data []byte) (clientAdvisory, Conn, error) {
	var adv clientAdvisory
	if err := CheckSize(kind, data); err != nil {
		return adv, Conn{}, err
	}
	if err := json.Unmarshal(data, &adv); err != nil {
		return adv, Conn{}, invalid("%s: malformed JSON: %s", kind, jsonProblem(err))
	}
	c := Conn{Server: adv.Server.ID, Client: adv.Client.ID}
	if err := c.Validate(); err != nil {
		return adv, Conn{}, invalid("%s: %v", kind, err)
	}
	return adv, c, nil
}

// cleanUser keeps a user only when it is plain text of at most
// MaxAdvisoryUser bytes: it is compared, never cut, so one that is not is
// no one's. (encoding/json has already made invalid UTF-8 U+FFFD.)
func cleanUser(s string) string {
	if len(s) > MaxAdvisoryUser || !utf8.ValidString(s) {
		return ""
	}
	for _, r := range s {
		if r == utf8.RuneError || r < ' ' || r == 0x7f {
			return ""
		}
	}
	return s
}

// DecodeConnect reads a connect advisory, as DecodeDisconnect does a
// disconnect: the server alone should publish it, but the bytes are still
// outside input, so the size and ids are bounded and the user is kept
// only when it is plain text within MaxAdvisoryUser.
func DecodeConnect(data []byte) (Connect, error) {
	adv, c, err := decodeClientAdvisory("connect advisory", data)
	if err != nil {
		return Connect{}, err
	}
	return Connect{Conn: c, User: cleanUser(adv.Client.User)}, nil
}

// DecodeDisconnect reads a disconnect advisory. The server alone should
// publish it, but the bytes are still outside input: size, ids and reason
// are bounded, a reason that is not plain text is cut, and the user is
// kept only when it is plain text within MaxAdvisoryUser.
func DecodeDisconnect(data []byte) (Disconnect, error) {
	adv, c, err := decodeClientAdvisory("disconnect advisory", data)
	if err != nil {
		return Disconnect{}, err
	}
	return Disconnect{Conn: c, User: cleanUser(adv.Client.User), Reason: cleanReason(adv.Reason)}, nil
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
