// Package bus is hail's way onto NATS: connecting with reconnects that never
// give up, embedding a server (one node or an in-process cluster) for the dev
// stack and the tests, and creating the KV buckets of PROTOCOL.md.
package bus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// ConnectOptions says where and as whom to connect.
type ConnectOptions struct {
	URL    string
	Name   string // client name, shown by `nats server report connections`
	Logger *slog.Logger
	// Extra options appended after hail's own, for tests and callers with
	// special needs (credentials, TLS).
	Extra []nats.Option
}

// maxBackoff caps the reconnect delay: long enough not to hammer a server
// that is restarting, short enough that heartbeats resume within an interval
// or two of its return.
const maxBackoff = 2 * time.Second

// Backoff is the reconnect delay after the given number of attempts:
// exponential from 50 ms, capped at maxBackoff, with full jitter so a fleet
// of clients does not reconnect in lock step.
func Backoff(attempts int) time.Duration {
	d := 50 * time.Millisecond << min(attempts, 6)
	d = min(d, maxBackoff)
	return d/2 + rand.N(d/2+1)
}

// Connect dials NATS and waits until connected or ctx ends. Once connected
// the connection reconnects forever; each disconnect and reconnect is
// logged. A refusal (bad credentials, an untrusted certificate) before the
// first connection is a misconfiguration: it is logged once with the
// server's reason and returned. One after (credentials being rotated) is
// logged with the reason and retried. URLs are logged without passwords.
func Connect(ctx context.Context, o ConnectOptions) (*nats.Conn, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "bus")
	where := RedactURL(o.URL)
	// Errors may quote a URL (nats.go's own, url.Parse's): none reaches a
	// log line or the caller with its secret.
	redact := func(err error) error { return RedactError(err, o.URL) }
	connected := make(chan struct{}, 1)
	signal := func() {
		select {
		case connected <- struct{}{}:
		default:
		}
	}
	refused := make(chan error, 1)
	var ever atomic.Bool
	var said atomic.Value // the last refusal logged, so a reason is said once
	refusal := func(err error) bool {
		if !refusedBy(err) {
			return false
		}
		if said.Swap(err.Error()) != err.Error() {
			log.Error("NATS refused this program", "url", where, "reason", redact(err))
		}
		if !ever.Load() {
			select {
			case refused <- err:
			default:
			}
		}
		return true
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.CustomReconnectDelay(Backoff),
		nats.ConnectHandler(func(nc *nats.Conn) {
			ever.Store(true)
			said.Store("")
			// The handler runs after the fact, on nats.go's callback
			// goroutine: a program that stopped at once (a port taken)
			// may have closed the connection by now, and then there is
			// no URL or server left to tell.
			if url := nc.ConnectedUrl(); url != "" {
				log.Info("connected to NATS", "url", RedactURL(url), "server", nc.ConnectedServerName())
			}
			signal()
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil && !refusal(err) {
				log.Warn("disconnected from NATS", "err", redact(err))
			}
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) { refusal(err) }),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			said.Store("")
			log.Info("reconnected to NATS", "url", RedactURL(nc.ConnectedUrl()), "server", nc.ConnectedServerName())
			signal()
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if refusal(err) {
				return
			}
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Error("NATS async error", "subject", subject, "err", redact(err))
		}),
	}
	opts = append(opts, o.Extra...)
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", where, redact(err))
	}
	if nc.IsConnected() {
		return nc, nil
	}
	log.Info("waiting for NATS", "url", where)
	select {
	case <-connected:
		return nc, nil
	case err := <-refused:
		nc.Close()
		return nil, fmt.Errorf("connect to %s: NATS refused this program: %w", where, redact(err))
	case <-ctx.Done():
		nc.Close()
		return nil, fmt.Errorf("connect to %s: %w", where, ctx.Err())
	}
}

// Redacted is what is printed of a secret.
const Redacted = "REDACTED"

// refusedBy reports an error that says the server will not take this
// program as it is: its credentials, or its trust in the server's
// certificate.
func refusedBy(err error) bool {
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) ||
		errors.Is(err, nats.ErrNkeysNotSupported) {
		return true
	}
	var verify *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	if errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &hostname) {
		return true
	}
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "authorization violation") || strings.Contains(s, "x509:") || strings.Contains(s, "tls: ")
}

// RedactURL is a URL list without the passwords or tokens in it, as it is
// printed, logged and put in errors: nats://user:REDACTED@host for a
// password, nats://REDACTED@host for a token. It works on the text, not on
// a parsed URL, so that a URL that does not parse (a bad port, a stray
// character) is redacted too; everything before the last @ of the
// authority counts as user info.
func RedactURL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, u := range parts {
		if secret, start, end := userInfo(u); secret {
			parts[i] = u[:start] + redactedUserInfo(u[start:end]) + u[end:]
		}
	}
	return strings.Join(parts, ",")
}

// userInfo finds the user info of one URL: u[start:end], before its @.
func userInfo(u string) (found bool, start, end int) {
	if k := strings.Index(u, "://"); k >= 0 {
		start = k + len("://")
	}
	at := strings.LastIndexByte(u[start:], '@')
	if at < 0 {
		return false, 0, 0
	}
	return true, start, start + at
}

// redactedUserInfo keeps a user name, never a password or a token.
func redactedUserInfo(info string) string {
	if user, _, password := strings.Cut(info, ":"); password {
		return user + ":" + Redacted
	}
	return Redacted
}

// RedactError is err with the user info of every URL of urls redacted in
// its text, as RedactURL does; it still wraps err. For errors made from a
// URL by code that knows nothing of secrets (url.Parse, nats.Connect).
func RedactError(err error, urls string) error {
	if err == nil {
		return nil
	}
	text := err.Error()
	for _, u := range strings.Split(urls, ",") {
		if found, start, end := userInfo(u); found && end > start {
			text = strings.ReplaceAll(text, u[start:end], redactedUserInfo(u[start:end]))
		}
	}
	if text == err.Error() {
		return err
	}
	return redactedError{err: err, text: text}
}

type redactedError struct {
	err  error
	text string
}

func (e redactedError) Error() string { return e.text }
func (e redactedError) Unwrap() error { return e.err }

// Drain drains nc (subscriptions finish what they hold, publishes are
// flushed) and waits up to timeout for it to close, then closes it anyway.
func Drain(nc *nats.Conn, timeout time.Duration) {
	if nc == nil || nc.IsClosed() {
		return
	}
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return
	}
	select {
	case <-closed:
	case <-time.After(timeout):
		nc.Close()
	}
}
