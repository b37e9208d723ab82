package main

import (
	"crypto/tls"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/hailsd/hail/bus/embedded"
	"github.com/hailsd/hail/credentials"
)

// LeafUser is the user every region's leafnode links authenticate as on
// a secured server (auth.file); its password is LeafPasswordFile beside
// auth.file.
const (
	LeafUser         = "leaf"
	LeafPasswordFile = "leaf.password"
)

// regionOptions gives o the region and its leafnodes, and returns
// configure extended, on a secured server, with the leaf user (the v1.5
// denies as its permissions, bound to hail's account) and TLS on the
// links. onFault is told the faults the link checker finds.
func (c *Config) regionOptions(o *embedded.ServerOptions, configure func(*server.Options), onFault func(error)) (func(*server.Options), error) {
	o.Region = c.Region
	o.Leaf = embedded.LeafOptions{Remotes: c.Leafnodes.Remotes, Prefix: c.Prefix, OnFault: onFault}
	if c.Leafnodes.Listen != "" {
		host, port, _ := hostPort(c.Leafnodes.Listen) // validated
		if port == 0 {
			port = -1 // any free port, as for listen
		}
		o.Leaf.Host, o.Leaf.Port = host, port
	}
	linked := c.Leafnodes.Listen != "" || len(c.Leafnodes.Remotes) > 0
	if !linked || c.Auth.File == "" {
		return configure, nil
	}
	pwFile := filepath.Join(filepath.Dir(c.Auth.File), LeafPasswordFile)
	data, err := os.ReadFile(pwFile)
	if err != nil {
		return nil, fmt.Errorf("leafnodes with auth.file need the leaf user's password (secure init writes %s): %w", LeafPasswordFile, err)
	}
	pw := strings.TrimSpace(string(data))
	if pw == "" {
		return nil, fmt.Errorf("%s is empty", pwFile)
	}
	for i, r := range o.Leaf.Remotes {
		u, err := url.Parse(r)
		if err != nil {
			return nil, fmt.Errorf("leafnodes.remotes: %q is not a URL", r)
		}
		u.User = url.UserPassword(LeafUser, pw)
		o.Leaf.Remotes[i] = u.String()
	}
	var tc *tls.Config
	if c.TLS.Cert != "" {
		if tc, err = server.GenTLSConfig(&server.TLSConfigOpts{CertFile: c.TLS.Cert, KeyFile: c.TLS.Key, CaFile: c.TLS.CA}); err != nil {
			return nil, fmt.Errorf("leafnode tls: %w", err)
		}
	}
	denies := &server.SubjectPermission{Deny: embedded.LeafDenies(c.Prefix)}
	return func(so *server.Options) {
		configure(so)
		var hail *server.Account
		for _, a := range so.Accounts {
			if a.Name == embedded.HailAccount {
				hail = a
			}
		}
		if c.Leafnodes.Listen != "" {
			so.LeafNode.Users = []*server.User{{Username: LeafUser, Password: pw, Account: hail,
				Permissions: &server.Permissions{Publish: denies, Subscribe: denies}}}
			if tc != nil {
				so.LeafNode.TLSConfig, so.LeafNode.TLSTimeout = tc.Clone(), 2
			}
		}
		for _, r := range so.LeafNode.Remotes {
			if tc != nil {
				// The other region's certificate is checked against
				// the shared CA; this side presents its own.
				rc := tc.Clone()
				rc.RootCAs = tc.ClientCAs
				r.TLS, r.TLSConfig, r.TLSTimeout = true, rc, 2
			}
		}
	}, nil
}

// writeLeafPassword writes the leaf user's password into dir unless one
// is there and keep: every region's servers share it (copy it with the
// CA), as they share the CA.
func writeLeafPassword(dir string, keep bool) error {
	path := filepath.Join(dir, LeafPasswordFile)
	if keep {
		if data, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(data)) != "" {
			return nil
		}
	}
	pw, err := credentials.NewPassword()
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(pw+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", LeafPasswordFile, err)
	}
	return os.Chmod(path, 0o600)
}
