// Package callout is the auth callout (NATS ADR-26, config mode) that
// services/nats runs inside itself for regions with identities (PROTOCOL
// v1.6): each connection that is not a static role presents an nkey (the
// server's nonce signed), its service as user, the service's bootstrap
// secret as password and its id as name; the callout checks all four and
// answers a user JWT named <service>.<id> whose permissions name that id
// alone (roles.Identity).
package callout

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/identity"
	"github.com/hailsd/hail/roles"
)

// Subject is where the server asks.
const Subject = "$SYS.REQ.USER.AUTH"

// responseTTL is how long an identity may answer a request it heard, as
// nats-server's allow_responses: true (two minutes, one reply).
const responseTTL = 2 * time.Minute

// Callout authorizes identities.
type Callout struct {
	issuer   nkeys.KeyPair
	account  string
	secrets  map[string][32]byte // by service: SHA-256 of its secret
	subjects events.Subjects
	log      *slog.Logger
}

// Config is what a Callout needs.
type Config struct {
	// Issuer signs the answers: the account nkey whose public key is the
	// server's auth_callout issuer.
	Issuer nkeys.KeyPair
	// Account is where identities are placed (roles.Account).
	Account string
	// Secrets are the services' bootstrap secrets, by service.
	Secrets  map[string]string
	Subjects events.Subjects
	Log      *slog.Logger
}

// New checks c and makes a Callout of it.
func New(c Config) (*Callout, error) {
	if c.Issuer == nil {
		return nil, errors.New("callout: no issuer key")
	}
	if pub, err := c.Issuer.PublicKey(); err != nil || !nkeys.IsValidPublicAccountKey(pub) {
		return nil, errors.New("callout: the issuer is not an account key")
	}
	if c.Account == "" {
		return nil, errors.New("callout: no account")
	}
	issuer, err := newSigner(c.Issuer)
	if err != nil {
		return nil, fmt.Errorf("callout: %w", err)
	}
	out := &Callout{issuer: issuer, account: c.Account, secrets: map[string][32]byte{}, subjects: c.Subjects, log: c.Log}
	if out.log == nil {
		out.log = slog.New(slog.DiscardHandler)
	}
	for svc, secret := range c.Secrets {
		if err := events.ValidateService(svc); err != nil {
			return nil, fmt.Errorf("callout: %w", err)
		}
		if secret == "" {
			return nil, fmt.Errorf("callout: service %s has an empty secret", svc)
		}
		out.secrets[svc] = sha256.Sum256([]byte(secret))
	}
	return out, nil
}

// Serve answers the server's requests on nc, which must be connected as
// one of the auth_users, until the subscription it returns is
// unsubscribed or nc closes. It returns once the server has the
// subscription, so that the connects that follow are answered. One
// answer is two signatures and two checks (about 0.3 ms of CPU): it
// answers on every core, not one request after another.
func (c *Callout) Serve(nc *nats.Conn) (*nats.Subscription, error) {
	sub, err := nc.SubscribeSync(Subject)
	if err != nil {
		return nil, fmt.Errorf("auth callout: subscribe %s: %w", Subject, err)
	}
	if err := nc.Flush(); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("auth callout: subscribe %s: %w", Subject, err)
	}
	for range runtime.GOMAXPROCS(0) {
		go c.serve(sub)
	}
	return sub, nil
}

// serve answers sub's requests until it ends.
func (c *Callout) serve(sub *nats.Subscription) {
	for {
		// Only the subscription's end (unsubscribed, its connection
		// closed) ends the wait.
		m, err := sub.NextMsgWithContext(context.Background())
		if err != nil {
			return
		}
		answer, err := c.Answer(m.Data)
		if errors.Is(err, ErrExpired) {
			continue // the server has refused the connect already
		}
		if err != nil {
			c.log.Error("auth callout: cannot answer", "err", err)
			continue
		}
		if err := m.Respond(answer); err != nil {
			c.log.Warn("auth callout: answer not sent", "err", err)
		}
	}
}

// ErrExpired is Answer's error for a request the server no longer waits
// for: it goes unanswered.
var ErrExpired = errors.New("the authorization request expired")

// Answer is the signed response to one authorization request: a user JWT
// for an identity that proved itself, or an error saying why not. It
// fails only when the request is not one (nothing to answer to).
func (c *Callout) Answer(request []byte) ([]byte, error) {
	req, err := jwt.DecodeAuthorizationRequestClaims(string(request))
	if err != nil {
		return nil, fmt.Errorf("decode request: %w", err)
	}
	// The server waits for the answer until the request expires (its
	// auth timeout: 10 s on hail's servers, bus/embedded); a later one
	// is work nobody waits for, and
	// while a region comes back it would keep the fresh ones waiting
	// past theirs (2,000 identities restarted: 11,414 connects refused
	// answering so). exp is in whole seconds: only a request past the
	// second after it is dropped.
	if req.Expires != 0 && time.Now().Unix() > req.Expires {
		return nil, ErrExpired
	}
	resp := jwt.NewAuthorizationResponseClaims(req.UserNkey)
	resp.Audience = req.Server.ID
	user, err := c.authorize(req)
	if err != nil {
		// The reason names no secret: the server logs it and closes the
		// connection with an authorization violation.
		c.log.Info("auth callout: refused", "service", c.known(req.ConnectOptions.Username), "host", req.ClientInformation.Host, "reason", err.Error())
		resp.Error = err.Error()
	} else {
		resp.Jwt = user
	}
	token, err := resp.Encode(c.issuer)
	if err != nil {
		return nil, fmt.Errorf("encode response: %w", err)
	}
	return []byte(token), nil
}

// authorize checks the connect and returns the user JWT.
func (c *Callout) authorize(req *jwt.AuthorizationRequestClaims) (string, error) {
	o := req.ConnectOptions
	service := o.Username
	want, ok := c.secrets[service]
	// Hashing first makes the compare's time independent of the
	// presented password's length; an unknown service is compared too.
	got := sha256.Sum256([]byte(o.Password))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 || !ok {
		return "", errors.New("not a service with that secret")
	}
	if o.Nkey == "" || !nkeys.IsValidPublicUserKey(o.Nkey) {
		return "", errors.New("no user nkey")
	}
	if err := verify(o.Nkey, req.ClientInformation.Nonce, o.SignedNonce); err != nil {
		return "", err
	}
	id := identity.ID(o.Nkey)
	if req.ClientInformation.Name != id {
		return "", errors.New("the connection name is not its key's id")
	}
	uc := jwt.NewUserClaims(req.UserNkey)
	uc.Name = events.InstanceKey(service, id) // what discovery reads back as the identity
	uc.Audience = c.account
	uc.Permissions = Permissions(roles.Identity(c.subjects, service, id))
	token, err := uc.Encode(c.issuer)
	if err != nil {
		return "", fmt.Errorf("encode user: %w", err)
	}
	return token, nil
}

// verify checks that sig (as nats.go sends it, base64) is pub's
// signature of the server's nonce.
func verify(pub, nonce, sig string) error {
	if nonce == "" || sig == "" {
		return errors.New("no signed nonce")
	}
	raw, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		if raw, err = base64.StdEncoding.DecodeString(sig); err != nil {
			return errors.New("the signed nonce is not base64")
		}
	}
	kp, err := nkeys.FromPublicKey(pub)
	if err != nil {
		return errors.New("no user nkey")
	}
	if err := kp.Verify([]byte(nonce), raw); err != nil {
		return errors.New("the nonce's signature is not the nkey's")
	}
	return nil
}

// Permissions are r's as a user JWT carries them.
func Permissions(r roles.IdentityRole) jwt.Permissions {
	var p jwt.Permissions
	p.Pub.Allow.Add(r.Publish...)
	p.Pub.Deny.Add(r.DenyPublish...)
	p.Sub.Allow.Add(r.Subscribe...)
	p.Sub.Deny.Add(r.DenySubscribe...)
	if r.AllowResponses {
		p.Resp = &jwt.ResponsePermission{MaxMsgs: 1, Expires: responseTTL}
	}
	return p
}

// known is user when it is one of the services, else "unknown": a user
// field may hold anything, a secret typed in the wrong place included,
// and a log holds no secret.
func (c *Callout) known(user string) string {
	if _, ok := c.secrets[user]; ok {
		return user
	}
	return "unknown"
}
