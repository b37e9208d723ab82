package embedded

import (
	"crypto/tls"
	"fmt"

	"github.com/nats-io/nats-server/v2/server"
)

// Security is what a server adds to be reached only by whom it should:
// TLS on its client port and cluster routes, and the users of an auth
// file (accounts, users, permissions, as `secure init` writes).
type Security struct {
	// Cert and Key turn TLS on; CA verifies client certificates (when
	// Verify) and, always, the routes' certificates: a peer is a route
	// only with a certificate the CA signed, as nats-server's own config
	// insists for clusters.
	Cert, Key, CA string
	Verify        bool
	// AuthFile is a nats-server configuration file whose accounts and
	// users are taken as they are.
	AuthFile string
}

// Configure reads the files and returns what ServerOptions.Configure
// takes; errors name the file that was wrong.
func (s Security) Configure() (func(*server.Options), error) {
	var tc *tls.Config
	if s.Cert != "" {
		var err error
		tc, err = server.GenTLSConfig(&server.TLSConfigOpts{CertFile: s.Cert, KeyFile: s.Key, CaFile: s.CA, Verify: s.Verify})
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
	}
	var auth *server.Options
	if s.AuthFile != "" {
		var err error
		if auth, err = server.ProcessConfigFile(s.AuthFile); err != nil {
			return nil, fmt.Errorf("auth file %s: %w", s.AuthFile, err)
		}
	}
	return func(o *server.Options) {
		if tc != nil {
			o.TLS, o.TLSConfig, o.TLSVerify, o.TLSTimeout = true, tc, s.Verify, 2
			if o.Cluster.Name != "" {
				rc := tc.Clone()
				if rc.ClientCAs != nil {
					rc.ClientAuth, rc.RootCAs = tls.RequireAndVerifyClientCert, rc.ClientCAs
				}
				o.Cluster.TLSConfig, o.Cluster.TLSTimeout = rc, 2
			}
		}
		if auth != nil {
			o.Accounts, o.Users, o.Nkeys = auth.Accounts, auth.Users, auth.Nkeys
			o.Authorization, o.Username, o.Password, o.NoAuthUser = auth.Authorization, auth.Username, auth.Password, auth.NoAuthUser
			o.SystemAccount = auth.SystemAccount
			// A callout (PROTOCOL v1.6) checks the nonce's signature
			// itself: the server must send one though it has no nkey users.
			o.AuthCallout, o.AlwaysEnableNonce = auth.AuthCallout, auth.AuthCallout != nil
		}
	}, nil
}
