package embedded

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
)

// Faults of a region's leafnode links, found by the link checker (PROTOCOL
// v1.5 "Bad input and faults").
var (
	// ErrSameRegion: a region of this server's own name answers over a
	// link. Two regions of one name would answer each other's JetStream
	// domain; they must not be joined.
	ErrSameRegion = errors.New("a region of the same name is joined by a leafnode link")
	// ErrLinkWithoutDenies: a link carries subjects that v1.5 keeps in
	// the region, as a link written by hand without hail's denies does.
	ErrLinkWithoutDenies = errors.New("a leafnode link carries subjects v1.5 keeps inside a region (a link configured without hail's denies?)")
)

// probeAnswer is what every hail server with a region answers on the
// probe subjects: who it is.
type probeAnswer struct {
	Region string `json:"region"`
	Server string `json:"server"`
}

// The probe subjects. The region probe crosses every link (it is not
// denied): a region asks it to find another region of its own name. The
// deny probe is under <prefix>.discovery.>, which every link denies: an
// answer from another region proves a link without the denies, as a
// discover published at home that came back over the link would.
func regionProbe(prefix string) string { return prefix + ".region.probe" }
func denyProbe(prefix string) string   { return prefix + ".discovery.probe" }

// probeUser is the in-process user of the link checker on a server with
// users of its own (an auth file): it may use the probe subjects and its
// replies only, and connect only in process.
const probeUser = "hail-region-probe"

// addProbeUser lets the checker in on a server whose auth file says who
// may connect, as a user of hail's account with a password made now and
// kept in memory. A server of hail's default accounts lets it in as the
// user without credentials. It returns the credentials to connect with.
func addProbeUser(opts *server.Options, prefix string) []nats.Option {
	if opts.NoAuthUser != "" {
		return nil
	}
	var acc *server.Account
	for _, a := range opts.Accounts {
		if a.Name == HailAccount {
			acc = a
		}
	}
	secret := make([]byte, 24)
	_, _ = rand.Read(secret) // never fails (crypto/rand)
	pw := hex.EncodeToString(secret)
	inbox := "_INBOX." + probeUser
	subjects := []string{regionProbe(prefix), denyProbe(prefix)}
	opts.Users = append(opts.Users, &server.User{
		Username: probeUser, Password: pw, Account: acc,
		AllowedConnectionTypes: map[string]struct{}{jwt.ConnectionTypeInProcess: {}},
		Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: subjects},
			Subscribe: &server.SubjectPermission{Allow: append(subjects, inbox+".>")},
			Response:  &server.ResponsePermission{MaxMsgs: 1, Expires: time.Minute},
		},
	})
	if opts.AuthCallout != nil {
		// A server whose callout authorizes its users (PROTOCOL v1.6)
		// leaves its own users to itself: this one too.
		ac := *opts.AuthCallout
		ac.AuthUsers = append(slices.Clone(ac.AuthUsers), probeUser)
		opts.AuthCallout = &ac
	}
	return []nats.Option{nats.UserInfo(probeUser, pw), nats.CustomInboxPrefix(inbox)}
}

// linkChecker answers the probes for its server and, while the server
// has leafnode links, checks them: each time the set of links changes,
// and a few times after (interest crosses a new link a moment after it
// is up). It lives as long as its in-process connection, which closes
// when the server shuts down.
type linkChecker struct {
	s        *server.Server
	nc       *nats.Conn
	region   string
	prefix   string
	log      *slog.Logger
	onFault  func(error)
	reported map[string]bool // owned by run's goroutine
}

// startLinkChecker connects to s in process and starts answering and
// checking.
func startLinkChecker(s *server.Server, o ServerOptions, creds []nats.Option, log *slog.Logger) error {
	prefix := o.Leaf.Prefix
	if prefix == "" {
		prefix = events.DefaultPrefix
	}
	nc, err := nats.Connect("", append(creds, nats.InProcessServer(s), nats.NoReconnect(), nats.Name("hail-region-probe"))...)
	if err != nil {
		return fmt.Errorf("link checker: connect in process: %w", err)
	}
	answer, _ := json.Marshal(probeAnswer{Region: o.Region, Server: s.ID()})
	for _, subj := range []string{regionProbe(prefix), denyProbe(prefix)} {
		if _, err := nc.Subscribe(subj, func(m *nats.Msg) { _ = m.Respond(answer) }); err != nil {
			nc.Close()
			return fmt.Errorf("link checker: subscribe %s: %w", subj, err)
		}
	}
	c := &linkChecker{s: s, nc: nc, region: o.Region, prefix: prefix, log: log, onFault: o.Leaf.OnFault, reported: map[string]bool{}}
	go c.run()
	return nil
}

// checkAfterChange is how many checks, a second apart, follow a change
// of the links.
const checkAfterChange = 5

func (c *linkChecker) run() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var links string
	pending := 0
	for range tick.C {
		if c.nc.IsClosed() {
			return
		}
		if now := c.links(); now != links {
			links, pending = now, checkAfterChange
		}
		if pending == 0 || links == "" {
			continue
		}
		pending--
		for _, err := range CheckLinks(c.s, c.nc, c.region, c.prefix) {
			if c.reported[err.Error()] {
				continue
			}
			c.reported[err.Error()] = true
			c.log.Error("leafnode link refused by hail's region check", "region", c.region, "err", err)
			if c.onFault != nil {
				c.onFault(err)
			}
		}
	}
}

// links names the server's leafnode connections now.
func (c *linkChecker) links() string {
	lz, err := c.s.Leafz(nil)
	if err != nil {
		return ""
	}
	ids := make([]string, len(lz.Leafs))
	for i, l := range lz.Leafs {
		ids[i] = fmt.Sprint(l.ID)
	}
	return strings.Join(ids, ",")
}

// probeWait is how long a probe collects answers: a link's round trip is
// a few ms, so a second leaves room for a loaded machine.
const probeWait = time.Second

// CheckLinks looks at s's leafnode links, with nc (a connection to s that
// may use the probe subjects), and returns one error per fault: a link
// whose subscriptions prove it is without the denies of LeafDenies (see
// deniedInterest), a deny probe answered from another region, a region
// probe answered by a server of another region with this region's name.
func CheckLinks(s *server.Server, nc *nats.Conn, region, prefix string) []error {
	var faults []error
	lz, err := s.Leafz(&server.LeafzOptions{Subscriptions: true})
	if err != nil {
		return []error{fmt.Errorf("look at the leafnode links: %w", err)}
	}
	denies := LeafDenies(prefix)
	for _, l := range lz.Leafs {
		for _, sub := range l.Subs {
			subject, _, _ := strings.Cut(sub, " ")
			if deniedInterest(subject, denies, !l.IsSpoke) {
				faults = append(faults, fmt.Errorf("%w: the link with %s (%s:%d) carries %s", ErrLinkWithoutDenies, l.Name, l.IP, l.Port, subject))
				break
			}
		}
	}
	own := ownServers(s)
	for _, a := range probe(nc, denyProbe(prefix)) {
		if a.Region != region {
			faults = append(faults, fmt.Errorf("%w: region %q answered %s", ErrLinkWithoutDenies, a.Region, denyProbe(prefix)))
		}
	}
	for _, a := range probe(nc, regionProbe(prefix)) {
		if a.Region == region && !own[a.Server] {
			faults = append(faults, fmt.Errorf("%w: server %s of another region %q answered", ErrSameRegion, a.Server, region))
		}
	}
	return faults
}

// deniedInterest reports whether a subscription the other side of a link
// sent over it proves the link is without hail's denies. A wildcard a
// deny only overlaps (hail.>) proves nothing, nor, on a link this server
// made, one a deny covers whole (discovery's hail.node.>): nats-server
// keeps it, and drops as it delivers each message the link's denies
// match. Proof is
//   - a literal subject under a deny: a leafnode refuses a literal
//     subscription its side of the link may not publish, so this server
//     keeps one only if it would send that subject across;
//   - on a link this server accepted, a wildcard a deny covers whole too:
//     the server that made the link sends one only if its deny-imports
//     (which it asks this server to apply to what it sends) miss it. The
//     accepting side sends all its interest, so on a link this server
//     made such a wildcard proves nothing.
//
// A link is accepted where this server is not the spoke: hail makes no
// link as a hub.
func deniedInterest(subject string, denies []string, accepted bool) bool {
	if !accepted && !server.IsValidLiteralSubject(subject) {
		return false
	}
	return slices.ContainsFunc(denies, func(d string) bool { return server.SubjectMatchesFilter(subject, d) })
}

// ownServers are s and the servers of its cluster: its region's.
func ownServers(s *server.Server) map[string]bool {
	own := map[string]bool{s.ID(): true}
	if rz, err := s.Routez(nil); err == nil {
		for _, r := range rz.Routes {
			own[r.RemoteID] = true
		}
	}
	return own
}

// probe publishes on subject and collects the answers for probeWait.
func probe(nc *nats.Conn, subject string) []probeAnswer {
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subject, inbox, nil); err != nil {
		return nil
	}
	var out []probeAnswer
	deadline := time.Now().Add(probeWait)
	for {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			return out
		}
		var a probeAnswer
		if json.Unmarshal(m.Data, &a) == nil {
			out = append(out, a)
		}
	}
}
