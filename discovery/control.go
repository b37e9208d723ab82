package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/schemas"
)

// The reasons rejected input is counted under.
const (
	reasonTooLarge  = "too_large"
	reasonSubject   = "bad_subject"
	reasonMalformed = "malformed"
	reasonInvalid   = "invalid"
	reasonSchema    = "schema"
	reasonMismatch  = "service_mismatch"
	reasonBadQuery  = "bad_query"
	reasonKV        = "kv_error"
	reasonBadRecord = "bad_record"
	reasonBadReply  = "bad_reply"
	reasonIDTaken   = "id_taken"
	reasonReplyTo   = "reply_subject" // a reply subject outside _INBOX.
	// reasonForeignReply: a reply subject in an inbox the sender cannot
	// own (replyRule).
	reasonForeignReply = "foreign_reply"
	reasonBusy         = "busy" // an announce shed by a busy node (503)
)

// controlDecoder runs every check PROTOCOL.md puts on an announce or
// deregister: size, subject, JSON, field rules, schema, and that the body's
// service (and, v1.6, id) is the subject's. A refusal comes with the reason it is counted
// under.
type controlDecoder struct {
	subjects events.Subjects
	schemas  *schemas.Set
}

func (d controlDecoder) announce(m *nats.Msg) (events.Announce, string, error) {
	return decodeControl(d, m, "announce", schemas.Announce, d.announceSubject, events.DecodeAnnounce,
		func(a events.Announce) (string, string) { return a.Service, a.ID })
}

func (d controlDecoder) deregister(m *nats.Msg) (events.Deregister, string, error) {
	return decodeControl(d, m, "deregister", schemas.Deregister, d.deregisterSubject, events.DecodeDeregister,
		func(r events.Deregister) (string, string) { return r.Service, r.ID })
}

func decodeControl[T any](d controlDecoder, m *nats.Msg, kind, schema string, parseSubject func(string) (string, string, error),
	decode func([]byte) (T, error), keyOf func(T) (string, string)) (T, string, error) {
	var zero T
	if err := events.CheckSize(kind, m.Data); err != nil {
		return zero, reasonTooLarge, err
	}
	service, id, err := parseSubject(m.Subject)
	if err != nil {
		return zero, reasonSubject, fmt.Errorf("%s: %w", kind, err)
	}
	v, err := decode(m.Data)
	if err != nil {
		if !json.Valid(m.Data) {
			return zero, reasonMalformed, err
		}
		return zero, reasonInvalid, err
	}
	if err := d.schemas.Validate(schema, m.Data); err != nil {
		return zero, reasonSchema, err
	}
	if gotService, gotID := keyOf(v); gotService != service || id != "" {
		if reason, err := checkKey(kind, service, id, gotService, gotID); err != nil {
			return zero, reason, err
		}
	}
	return v, "", nil
}

// MaxReason bounds the reason of a health or node event, which HAIL_EVENTS
// keeps for a week and logs repeat: a longer one, a deregister's say, is
// cut to it on a UTF-8 boundary (PROTOCOL v1.2 details).
const MaxReason = 256

// replier answers requests to a node: acks, JSON answers, and errors that
// say what was wrong, each refusal counted and logged (at a bounded rate:
// a flood of bad messages must not become a flood of log lines).
type replier struct {
	nc    *nats.Conn
	node  string
	log   *slog.Logger
	quiet *quietLog
	m     *nodeMetrics
}

func (r replier) ack(m *nats.Msg, id string) {
	if m.Reply == "" {
		return
	}
	data, _ := json.Marshal(events.Ack{OK: true, ID: id, Node: r.node}) // plain fields always encode
	if err := r.nc.Publish(m.Reply, data); err != nil {
		r.log.Warn("acknowledge", "subject", truncate(m.Subject), "err", err)
	}
}

// json answers v, or a 400 when it would not fit in one message.
func (r replier) json(m *nats.Msg, v any) {
	if m.Reply == "" {
		return
	}
	data, err := json.Marshal(v)
	if err != nil {
		r.fail(m, fmt.Errorf("encode answer: %w", err))
		return
	}
	if max := r.nc.MaxPayload(); int64(len(data)) > max {
		r.reject(m, reasonTooLarge, fmt.Errorf(`answer of %d bytes exceeds the server's max payload of %d; filter by service or status, or page it: {"limit":1000}, then {"limit":1000,"after":"<service>.<id> of the last instance"}`, len(data), max))
		return
	}
	if err := r.nc.Publish(m.Reply, data); err != nil {
		r.log.Warn("answer query", "subject", truncate(m.Subject), "err", err)
	}
}

// reject answers bad input with a 400 that says what was wrong, counts it,
// and logs it; the registry is untouched.
func (r replier) reject(m *nats.Msg, reason string, err error) {
	r.m.rejected(reason).Inc()
	r.quiet.log(slog.LevelWarn, reason, "rejected message", "subject", truncate(m.Subject), "err", truncate(err.Error()))
	r.send(m, events.ErrorMsg(events.CodeBadRequest, err.Error()))
}

// fail answers a request the node could not carry out through no fault of
// the sender's (KV unavailable): a 503, so the sender tries again.
func (r replier) fail(m *nats.Msg, err error) {
	r.m.rejected(reasonKV).Inc()
	r.quiet.log(slog.LevelError, reasonKV, "request failed", "subject", truncate(m.Subject), "err", truncate(err.Error()))
	r.send(m, events.ErrorMsg(events.CodeUnavailable, err.Error()))
}

// send publishes out to m's reply subject (m comes from a micro endpoint
// and is not bound to a subscription, so m.RespondMsg cannot).
func (r replier) send(m *nats.Msg, out *nats.Msg) {
	if m.Reply == "" {
		return
	}
	out.Subject = m.Reply
	_ = r.nc.PublishMsg(out) // the sender's own timeout covers a lost reply
}

// truncate bounds a value from the bus that goes into a log line: 200
// bytes, cut on a UTF-8 boundary.
func truncate(s string) string {
	if len(s) > 200 {
		return events.CutOutput(s, 200) + "..."
	}
	return s
}

// quietEvery is how often one reason's refusals are logged at most.
const quietEvery = 10 * time.Second

// quietLog logs refusals at most once per reason every quietEvery; the
// next line says how many it kept quiet since the last (the metrics count
// each). Reasons are a fixed set, so its map stays small.
type quietLog struct {
	out   *slog.Logger
	now   func() time.Time
	mu    sync.Mutex
	byWhy map[string]*quietReason
}

type quietReason struct {
	last  time.Time
	quiet int
}

func newQuietLog(out *slog.Logger) *quietLog {
	return &quietLog{out: out, now: time.Now, byWhy: map[string]*quietReason{}}
}

// log writes msg with reason and args at level, unless a line of the
// same reason went out within quietEvery.
func (q *quietLog) log(level slog.Level, reason, msg string, args ...any) {
	if !q.out.Enabled(context.Background(), level) {
		return
	}
	now := q.now()
	q.mu.Lock()
	r := q.byWhy[reason]
	if r == nil {
		r = &quietReason{}
		q.byWhy[reason] = r
	}
	if !r.last.IsZero() && now.Sub(r.last) < quietEvery {
		r.quiet++
		q.mu.Unlock()
		return
	}
	quiet := r.quiet
	r.last, r.quiet = now, 0
	q.mu.Unlock()
	args = append([]any{"reason", reason}, args...)
	if quiet > 0 {
		args = append(args, "suppressed", quiet, "suppressed_for", quietEvery)
	}
	q.out.Log(context.Background(), level, msg, args...)
}
