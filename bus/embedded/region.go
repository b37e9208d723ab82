package embedded

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/events"
)

// LeafOptions join a server's region to other regions by leafnodes
// (PROTOCOL v1.5): it accepts their links, or makes links to them (or to
// a hub), each with the v1.5 denies written here, never by hand.
type LeafOptions struct {
	// Host accepts leafnode links; default 127.0.0.1.
	Host string
	// Port accepts leafnode links when not 0; -1 picks a free one.
	Port int
	// Remotes are the other regions (or a hub) to link to,
	// nats-leaf://host:port each.
	Remotes []string
	// Prefix of the hail subjects the denies are written for; default
	// hail.
	Prefix string
	// OnFault, when set, is told each fault the link checker finds
	// (ErrSameRegion, ErrLinkWithoutDenies), once each; they are logged
	// in any case.
	OnFault func(error)
}

// linked reports whether the server takes part in links at all.
func (l LeafOptions) linked() bool { return l.Port != 0 || len(l.Remotes) > 0 }

// LeafDenies are the subjects a leafnode link carries in neither
// direction (PROTOCOL v1.5): what a region keeps to itself. Without them
// one region's discover makes every instance on earth announce again,
// and each region's HAIL_EVENTS captures the other's events.
func LeafDenies(prefix string) []string {
	if prefix == "" {
		prefix = events.DefaultPrefix
	}
	return []string{
		prefix + ".discover",
		prefix + ".hb.>",
		prefix + ".health.>",
		prefix + ".node.>",
		prefix + ".announce.>",
		prefix + ".deregister.>",
		prefix + ".discovery.>",
	}
}

// leafRemote parses one of LeafOptions.Remotes.
func leafRemote(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("leafnode remote %q: %w", bus.RedactURL(raw), bus.RedactError(err, raw))
	}
	if u.Scheme != "nats-leaf" || u.Host == "" {
		return nil, fmt.Errorf("leafnode remote %q is not nats-leaf://host:port", bus.RedactURL(raw))
	}
	return u, nil
}

// configureRegion sets the server's JetStream domain and its leafnodes.
// Each link this server makes denies the v1.5 subjects both ways: its
// own publish and subscribe permissions on the link, and the deny it
// sends in its CONNECT, which the accepting server applies to what it
// sends back. A link another server makes to this one is as that server
// configured it: CheckLinks finds one that carries what it must not.
func configureRegion(o ServerOptions, opts *server.Options) error {
	if o.Region != "" {
		if err := events.ValidateRegion(o.Region); err != nil {
			return fmt.Errorf("region: %w", err)
		}
		opts.JetStreamDomain = o.Region
	}
	if o.Leaf.Port != 0 {
		opts.LeafNode.Host = o.Leaf.Host
		if opts.LeafNode.Host == "" {
			opts.LeafNode.Host = "127.0.0.1"
		}
		opts.LeafNode.Port = o.Leaf.Port
	}
	denies := LeafDenies(o.Leaf.Prefix)
	for _, raw := range o.Leaf.Remotes {
		u, err := leafRemote(strings.TrimSpace(raw))
		if err != nil {
			return err
		}
		opts.LeafNode.Remotes = append(opts.LeafNode.Remotes, &server.RemoteLeafOpts{
			URLs:        []*url.URL{u},
			DenyImports: denies,
			DenyExports: denies,
		})
	}
	return nil
}

// bindLeafAccounts makes the links this server makes carry hail's
// account: the one clients without credentials are (no_auth_user), the
// one JetStream and the buckets live in.
func bindLeafAccounts(opts *server.Options) {
	for _, a := range opts.Accounts {
		if a.Name != HailAccount {
			continue
		}
		for _, r := range opts.LeafNode.Remotes {
			if r.LocalAccount == "" {
				r.LocalAccount = HailAccount
			}
		}
	}
}
