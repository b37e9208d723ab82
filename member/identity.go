package member

import (
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/identity"
)

// PROTOCOL v1.6: an instance connects as its own identity, and the server
// refuses it every subject of another instance. The member side of such a
// connection announces and deregisters on P.announce.<S>.<id> and
// P.deregister.<S>.<id>, is heartbeated on the scoped subject, and holds
// one member: the identity's own instance.

// FirstReconnectSpread bounds the wait before an identity's first
// reconnect after it lost its server: every instance of a region loses it
// at once when the server restarts, and each connect costs the server's
// auth callout about a millisecond of CPU, so they come back spread over
// this window instead of in one burst the server cannot authorize in time
// (PROTOCOL v1.6 "Reconnect storms"; below discovery's 10 s budget).
const FirstReconnectSpread = 5 * time.Second

// IdentityOptions are the options of a connection made as id of service
// with the service's bootstrap secret, to append after bus.Connect's own:
// the nkey, user and secret, the id as the name, the inbox _INBOX.<id>,
// authorization errors retried, ConnectTimeout, and every reconnect
// after a disconnect paced by a ReconnectPace of its own. In a cluster
// the first pass over the other servers goes at once: nats.go waits only
// after it has tried every server.
func IdentityOptions(id *identity.Identity, service, secret string) []nats.Option {
	p := NewReconnectPace()
	return append(id.Options(service, secret), nats.SetCustomDialer(p), nats.CustomReconnectDelay(p.Delay), nats.Timeout(ConnectTimeout))
}

// ConnectTimeout bounds an identity's connect, its authorization by the
// callout included (nats.go's default is 2 s): above the 10 s hail's
// servers give an authorization (bus/embedded), so that the client does
// not give up on a connect the server still waits for; one given up on
// is authorized all the same, and its retry asks again.
const ConnectTimeout = 11 * time.Second

// ReconnectPace spreads an identity's reconnects: a random time below
// FirstReconnectSpread before the first pass over its servers, and the
// same window again after a pass on which no server was listening (a
// refused dial costs a server nothing, and the restarted server is what
// the identity waits for), but a window doubled after every pass that
// reached a server and was not let in (IdentityBackoff): the callout
// could not authorize it in time, and its retry must not come back
// sooner than the crowd it came with.
//
// Doubling on unreachable passes too made the tail: the identities whose
// first draw fell before their restarted server listened waited up to
// 10 s more (BenchmarkIdentitiesRestart: 2,000 back in 9.8-12.3 s at
// worst).
//
// It is the connection's dialer (nats.SetCustomDialer), so that it knows
// whether a pass reached a server, and its Delay is the connection's
// nats.CustomReconnectDelay. One pace serves one connection.
type ReconnectPace struct {
	dialer net.Dialer
	// reached counts dials that connected since the last Delay.
	reached atomic.Int64
	// refused counts the passes of this reconnect that reached a server
	// and were not let in. Delay alone uses it, on the connection's
	// reconnect goroutine.
	refused atomic.Int64
}

// NewReconnectPace is a pace whose dials give up after dialTimeout.
func NewReconnectPace() *ReconnectPace {
	return &ReconnectPace{dialer: net.Dialer{Timeout: dialTimeout}}
}

// dialTimeout bounds the TCP connect alone (nats.go's default): the long
// wait of ConnectTimeout is for the authorization after it, and a server
// that does not answer the dial at all (a cut route) should cost a pass
// over a cluster seconds, not 11 s a server.
const dialTimeout = nats.DefaultTimeout

// Dial is net.Dialer's, counting the dials that connect.
func (p *ReconnectPace) Dial(network, address string) (net.Conn, error) {
	c, err := p.dialer.Dial(network, address)
	if err == nil {
		p.reached.Add(1)
	}
	return c, err
}

// Delay is the wait before pass attempts of a reconnect (nats.go counts
// from 1, and asks before every pass over the servers).
func (p *ReconnectPace) Delay(attempts int) time.Duration {
	reached := p.reached.Swap(0) > 0
	switch {
	case attempts <= 1:
		p.refused.Store(0)
	case reached:
		p.refused.Add(1)
	}
	return IdentityBackoff(int(p.refused.Load()) + 1)
}

// IdentityBackoff is the reconnect delay after the given number of passes
// over the servers that were not let in, plus one: a random time below
// FirstReconnectSpread for 1, and below a window that doubles with every
// pass after, up to ReconnectSpreadCap. With bus.Backoff's 50 ms to 2 s,
// 2,000 identities restarted under a busy machine reconnected 676 in 5 s
// and then none for 22 s while the callout worked through requests whose
// clients had given up (TestIdentitiesRestart's log); spread over 5 s,
// all 2,000 were back in 14 s. A window that stays at 5 s still collapses
// where the callout authorizes fewer than 400 a second (under the race
// detector: 30 of 2,000 back in 3 minutes); doubling it halves the load
// every pass until the callout keeps up.
func IdentityBackoff(attempts int) time.Duration {
	return Jitter(FirstReconnectSpread << min(max(attempts-1, 0), reconnectDoublings))
}

// reconnectDoublings bounds IdentityBackoff's window at
// FirstReconnectSpread << reconnectDoublings: ReconnectSpreadCap.
const reconnectDoublings = 3

// ReconnectSpreadCap is the widest an identity's reconnects are spread.
const ReconnectSpreadCap = FirstReconnectSpread << reconnectDoublings

// ReadSecret reads a service's bootstrap secret from file, as secure init
// writes it with identities, its default (svc-<S>.secret: the secret
// alone on one line).
// The error names the file, never what it holds.
func ReadSecret(file string) (string, error) {
	st, err := os.Stat(file)
	if err != nil {
		return "", fmt.Errorf("read secret: %w", err)
	}
	if st.Size() > 4<<10 {
		return "", fmt.Errorf("read secret %s: larger than 4 KiB", file)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read secret: %w", err)
	}
	secret := strings.TrimSpace(string(data))
	if secret == "" || strings.ContainsAny(secret, " \t\r\n") {
		return "", fmt.Errorf("read secret %s: not one secret alone on a line", file)
	}
	return secret, nil
}

// LoadOrNew is the identity kept in seedFile, made and saved there (0600)
// when the file does not exist yet, so that an instance keeps its id
// across restarts; with seedFile "" a fresh identity each time.
func LoadOrNew(seedFile string) (*identity.Identity, error) {
	if seedFile == "" {
		return identity.New()
	}
	id, err := identity.Load(seedFile)
	if err == nil {
		return id, nil
	}
	if _, serr := os.Stat(seedFile); !os.IsNotExist(serr) {
		return nil, err
	}
	if id, err = identity.New(); err != nil {
		return nil, err
	}
	if err := id.Save(seedFile); err != nil {
		return nil, err
	}
	return id, nil
}

// NewIdentityConn is the member side of nc, a connection made as the
// identity id of service (IdentityOptions): its one member is that
// instance, scoped, and it announces and deregisters on the identity's
// own subjects.
func NewIdentityConn(nc *nats.Conn, subjects events.Subjects, interval time.Duration, service, id string) *Conn {
	c := NewConn(nc, subjects, interval)
	c.identity = &owner{service: service, id: id}
	return c
}

// owner is the identity a Conn was made as.
type owner struct{ service, id string }

// check refuses a member that is not the identity's own instance: the
// server would refuse its subjects anyway, and silently.
func (o *owner) check(cfg Config) error {
	if o == nil {
		return nil
	}
	if cfg.Service != o.service || cfg.ID != o.id {
		return fmt.Errorf("the connection is the identity %s.%s: it cannot join %s.%s", o.service, o.id, cfg.Service, cfg.ID)
	}
	if !cfg.Scoped {
		return fmt.Errorf("the identity %s.%s is heartbeated on its scoped subject: join it scoped", o.service, o.id)
	}
	return nil
}

// announceSubject and deregisterSubject are where a member of c speaks:
// an identity's own subjects, or the service's (v1).
func (c *Conn) announceSubject(service, id string) string {
	if c.identity != nil {
		return c.subjects.Announce(service) + "." + id
	}
	return c.subjects.Announce(service)
}

func (c *Conn) deregisterSubject(service, id string) string {
	if c.identity != nil {
		return c.subjects.Deregister(service) + "." + id
	}
	return c.subjects.Deregister(service)
}
