package member_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/identity"
	"github.com/hailsd/hail/identity/identitytest"
	"github.com/hailsd/hail/member"
)

// connectAs connects as id of service with secret, the member side's way.
func connectAs(t *testing.T, r *identitytest.Region, id *identity.Identity, service, secret string) (*nats.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	nc, err := bus.Connect(ctx, bus.ConnectOptions{URL: r.URL, Extra: member.IdentityOptions(id, service, secret)})
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, err
}

// An instance with its own identity (PROTOCOL v1.6) in a region set up as
// secure init --identities: it connects with its nkey and its service's
// secret, announces on hail.announce.<S>.<id>, is answered on its own
// inbox, heartbeated on its scoped subject and passing, and deregisters
// on hail.deregister.<S>.<id> when it leaves.
func TestIdentityMember(t *testing.T) {
	r := identitytest.New(t, "echo")
	_, kv := r.Discovery(discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 100 * time.Millisecond, Timeout: 80 * time.Millisecond}}})
	id, err := identity.New()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := connectAs(t, r, id, "echo", r.Secret("echo"))
	if err != nil {
		t.Fatal(err)
	}
	if got := nc.NewRespInbox(); !strings.HasPrefix(got, "_INBOX."+id.ID()+".") {
		t.Errorf("inbox %s, want one under _INBOX.%s", got, id.ID())
	}
	conn := member.NewIdentityConn(nc, events.Subjects{}, 100*time.Millisecond, "echo", id.ID())
	m, err := conn.Join(member.Config{Service: "echo", ID: id.ID(), Scoped: true,
		Announce: func() events.Announce {
			return events.Announce{ID: id.ID(), Service: "echo", Version: "1.0.0", Endpoints: []events.Endpoint{{Name: "say"}}, Weight: 100, Scoped: true}
		},
		Report: func() events.HeartbeatReply { return events.HeartbeatReply{Status: events.Passing} },
	})
	if err != nil {
		t.Fatal(err)
	}
	key := events.InstanceKey("echo", id.ID())
	bustest.Eventually(t, 10*time.Second, func() error {
		if err := m.Err(); err != nil {
			return err
		}
		e, err := kv.Instances.Get(t.Context(), key)
		if err != nil {
			return err
		}
		rec, err := events.DecodeInstanceRecord(e.Value())
		if err != nil {
			return err
		}
		if rec.Status != events.Passing || m.LastBeat().IsZero() {
			return fmt.Errorf("%s is %s, heartbeated at %v", key, rec.Status, m.LastBeat())
		}
		return nil
	})
	if err := m.Leave(t.Context(), nil); err != nil {
		t.Fatalf("leave: %v", err)
	}
	if _, err := kv.Instances.Get(t.Context(), key); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("%s after leaving: %v, want it deregistered", key, err)
	}
	if err := nc.LastError(); err != nil {
		t.Errorf("the identity's connection: %v", err)
	}
}

// An identity's connection holds its own instance alone, scoped: anything
// else would speak on subjects the server refuses it.
func TestIdentityConnJoinsItsOwnInstanceAlone(t *testing.T) {
	nc := bustest.Connect(t, bustest.RunServer(t).ClientURL())
	id, _ := identity.New()
	other, _ := identity.New()
	conn := member.NewIdentityConn(nc, events.Subjects{}, time.Second, "echo", id.ID())
	report := func() events.HeartbeatReply { return events.HeartbeatReply{Status: events.Passing} }
	announce := func() events.Announce { return events.Announce{} }
	for _, c := range []struct {
		name string
		cfg  member.Config
	}{
		{"another id", member.Config{Service: "echo", ID: other.ID(), Scoped: true}},
		{"another service", member.Config{Service: "greeter", ID: id.ID(), Scoped: true}},
		{"unscoped", member.Config{Service: "echo", ID: id.ID()}},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.Announce, c.cfg.Report = announce, report
			if m, err := conn.Join(c.cfg); err == nil {
				m.Close()
				t.Fatalf("joined %+v", c.cfg)
			}
		})
	}
}

// A reconnect after a disconnect waits a random time below
// FirstReconnectSpread, spread over the whole of it, on the first pass;
// the window doubles with each pass after, up to ReconnectSpreadCap.
func TestIdentityBackoff(t *testing.T) {
	tests := []struct {
		attempts int
		window   time.Duration
	}{
		{0, member.FirstReconnectSpread},
		{1, member.FirstReconnectSpread},
		{2, 2 * member.FirstReconnectSpread},
		{3, 4 * member.FirstReconnectSpread},
		{4, member.ReconnectSpreadCap},
		{10, member.ReconnectSpreadCap},
		{1 << 30, member.ReconnectSpreadCap},
	}
	for _, tt := range tests {
		var lo, hi time.Duration = time.Hour, 0
		for range 1000 {
			d := member.IdentityBackoff(tt.attempts)
			lo, hi = min(lo, d), max(hi, d)
		}
		if lo < 0 || hi >= tt.window || hi-lo < tt.window/2 {
			t.Errorf("attempts %d: delays %v..%v, want spread over [0, %v)", tt.attempts, lo, hi, tt.window)
		}
	}
}

// An identity's reconnects are spread over FirstReconnectSpread, and over
// a window doubled only after a pass that reached a server and was not
// let in: a pass on which nothing listened (the server still starting)
// leaves the window as it was; a new reconnect starts from the first.
func TestReconnectPace(t *testing.T) {
	listening, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listening.Close()
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	goneAddr := gone.Addr().String()
	gone.Close()

	base := member.FirstReconnectSpread
	tests := []struct {
		name    string
		reached []bool // each pass of the reconnect: did its dial connect
		again   bool   // then a new reconnect begins
		window  time.Duration
	}{
		{name: "first pass", window: base},
		{name: "no server listening", reached: []bool{false}, window: base},
		{name: "no server listening, three passes", reached: []bool{false, false, false}, window: base},
		{name: "reached, not let in", reached: []bool{true}, window: 2 * base},
		{name: "reached twice", reached: []bool{true, true}, window: 4 * base},
		{name: "reached, then no server listening", reached: []bool{true, false}, window: 2 * base},
		{name: "reached four times: the cap", reached: []bool{true, true, true, true}, window: member.ReconnectSpreadCap},
		{name: "a new reconnect", reached: []bool{true, true}, again: true, window: base},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := member.NewReconnectPace()
			p.Delay(1)
			for i, reach := range tt.reached {
				addr := goneAddr
				if reach {
					addr = listening.Addr().String()
				}
				c, err := p.Dial("tcp", addr)
				if (err == nil) != reach {
					t.Fatalf("dial %s: %v", addr, err)
				}
				if c != nil {
					c.Close()
				}
				p.Delay(i + 2)
			}
			attempts := len(tt.reached) + 2
			if tt.again {
				attempts = 1
			}
			// Delays with no dial between them keep the window.
			var lo, hi time.Duration = time.Hour, 0
			for range 1000 {
				d := p.Delay(attempts)
				lo, hi = min(lo, d), max(hi, d)
			}
			if lo < 0 || hi >= tt.window || hi-lo < tt.window/2 {
				t.Errorf("delays %v..%v, want spread over [0, %v)", lo, hi, tt.window)
			}
		})
	}
}

// LoadOrNew keeps an identity in its seed file (0600): the id survives a
// restart. A file that is there but no seed is an error, not a new id.
func TestLoadOrNew(t *testing.T) {
	dir := t.TempDir()
	seed := filepath.Join(dir, "echo.seed")
	a, err := member.LoadOrNew(seed)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(seed)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("seed file: %v %v, want mode 0600", err, st)
	}
	b, err := member.LoadOrNew(seed)
	if err != nil || b.ID() != a.ID() {
		t.Fatalf("loaded %v %v, want id %s again", b, err, a.ID())
	}
	bad := filepath.Join(dir, "bad.seed")
	if err := os.WriteFile(bad, []byte("not a seed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := member.LoadOrNew(bad); err == nil {
		t.Error("a file that holds no seed gave an identity")
	}
	if c, err := member.LoadOrNew(""); err != nil || c.ID() == a.ID() {
		t.Errorf("no seed file: %v %v, want a fresh identity", c, err)
	}
}

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, text, want string
	}{
		{"one line", "s3cret\n", "s3cret"},
		{"no newline", "s3cret", "s3cret"},
		{"empty", "\n", ""},
		{"two words", "a b\n", ""},
		{"two lines", "a\nb\n", ""},
		{"too large", strings.Repeat("x", 5<<10), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-"))
			if err := os.WriteFile(f, []byte(c.text), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := member.ReadSecret(f)
			if c.want == "" {
				if err == nil {
					t.Fatalf("read %q", got)
				}
				if strings.Contains(err.Error(), strings.TrimSpace(c.text)) && strings.TrimSpace(c.text) != "" {
					t.Errorf("the error quotes the file: %v", err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("read %q %v, want %q", got, err, c.want)
			}
		})
	}
}
