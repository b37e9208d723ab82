package events

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// Headers of PROTOCOL.md.
const (
	HeaderKey              = "Hail-Key"
	HeaderInstance         = "Hail-Instance"
	HeaderServiceError     = "Nats-Service-Error"
	HeaderServiceErrorCode = "Nats-Service-Error-Code"
)

// HeaderRouter names the router that routed a reply, beside
// Hail-Instance (PROTOCOL v1.5).
const HeaderRouter = "Hail-Router"

// Error codes of PROTOCOL.md, HTTP-like as in the NATS micro convention.
const (
	CodeBadRequest  = 400
	CodeNotFound    = 404
	CodeInternal    = 500
	CodeUnavailable = 503
	CodeTimeout     = 504
)

// ErrorMsg is an error reply: the text and code in the NATS micro headers,
// and the same as an ErrorBody for clients that read only the payload (the
// `nats` CLI prints both).
func ErrorMsg(code int, text string) *nats.Msg {
	return errorMsg(ErrorBody{Error: text, Code: code})
}

// BusyMsg is a 503 that says when to come back: retry_after_ms, in whole
// milliseconds, at least 1.
func BusyMsg(text string, after time.Duration) *nats.Msg {
	return errorMsg(ErrorBody{Error: text, Code: CodeUnavailable, RetryAfterMS: max(after.Milliseconds(), 1)})
}

func errorMsg(e ErrorBody) *nats.Msg {
	text, code := e.Error, e.Code
	body, _ := json.Marshal(e) // plain fields always encode
	m := nats.NewMsg("")
	m.Header.Set(HeaderServiceError, text)
	m.Header.Set(HeaderServiceErrorCode, strconv.Itoa(code))
	m.Data = body
	return m
}

// ReplyError reads an error reply; ok is false for a normal reply.
func ReplyError(m *nats.Msg) (code int, text string, ok bool) {
	if m == nil || m.Header == nil {
		return 0, "", false
	}
	c := m.Header.Get(HeaderServiceErrorCode)
	if c == "" {
		return 0, "", false
	}
	code, err := strconv.Atoi(c)
	if err != nil {
		code = CodeInternal
	}
	return code, m.Header.Get(HeaderServiceError), true
}
