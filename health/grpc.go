package health

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/hailsd/hail/events"
)

// GRPC probes a server's standard health service (grpc.health.v1
// Health/Check): passing when it answers SERVING for Service (empty: the
// whole server), critical for any other answer, an error or the timeout.
//
// It speaks the protocol itself over HTTP/2 (h2c, or TLS with UseTLS)
// with the standard library rather than through grpc-go, whose module
// would bring OpenTelemetry and cloud modules into the module graph of
// every service that imports hail's SDK; the wire format is small (one
// length-prefixed protobuf message each way, a status in the trailers)
// and health/grpctest checks it against grpc-go's own health server. One
// HTTP/2 connection is kept and reused between probes.
type GRPC struct {
	url     string
	service string
	client  *http.Client
}

// NewGRPC makes the probe of target (host:port).
func NewGRPC(target, service string, useTLS, tlsSkipVerify bool) *GRPC {
	var p http.Protocols
	scheme := "http"
	tr := &http.Transport{}
	if useTLS {
		scheme = "https"
		p.SetHTTP2(true)
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: tlsSkipVerify, NextProtos: []string{"h2"}} // as asked for, like Consul's grpc_use_tls with tls_skip_verify
	} else {
		p.SetUnencryptedHTTP2(true)
	}
	tr.Protocols = &p
	return &GRPC{url: scheme + "://" + target + "/grpc.health.v1.Health/Check", service: service, client: &http.Client{Transport: tr}}
}

// gRPC status codes and health statuses used here.
const (
	grpcOK      = 0
	healthServe = 1 // HealthCheckResponse.SERVING
)

var healthStatusNames = map[uint64]string{0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}

// Probe calls Check once under ctx.
func (g *GRPC) Probe(ctx context.Context) Result {
	what := "grpc.health.v1 " + g.url
	if g.service != "" {
		what += " service " + strconv.Quote(g.service)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.url, bytes.NewReader(frame(checkRequest(g.service))))
	if err != nil {
		return result(events.Critical, fmt.Sprintf("%s: %v", what, err))
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	resp, err := g.client.Do(req)
	if err != nil {
		return result(events.Critical, fmt.Sprintf("%s: %v", what, err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return result(events.Critical, fmt.Sprintf("%s: read answer: %v", what, err))
	}
	if resp.StatusCode != http.StatusOK {
		return result(events.Critical, fmt.Sprintf("%s: HTTP %s", what, resp.Status))
	}
	// A trailers-only answer carries the status in the headers.
	code, msg := resp.Trailer.Get("Grpc-Status"), resp.Trailer.Get("Grpc-Message")
	if code == "" {
		code, msg = resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
	}
	if code != strconv.Itoa(grpcOK) {
		return result(events.Critical, fmt.Sprintf("%s: grpc status %s %s", what, code, msg))
	}
	status, err := checkResponse(body)
	if err != nil {
		return result(events.Critical, fmt.Sprintf("%s: %v", what, err))
	}
	name := healthStatusNames[status]
	if name == "" {
		name = strconv.FormatUint(status, 10)
	}
	if status != healthServe {
		return result(events.Critical, fmt.Sprintf("%s: %s", what, name))
	}
	return result(events.Passing, fmt.Sprintf("%s: %s", what, name))
}

// Close releases the kept connection.
func (g *GRPC) Close() { g.client.CloseIdleConnections() }

// checkRequest encodes HealthCheckRequest{service = 1}.
func checkRequest(service string) []byte {
	if service == "" {
		return nil
	}
	b := []byte{1<<3 | 2}
	b = binary.AppendUvarint(b, uint64(len(service)))
	return append(b, service...)
}

// frame is gRPC's length-prefixed message: not compressed, big-endian
// length, the message.
func frame(msg []byte) []byte {
	b := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	return append(b, msg...)
}

// checkResponse decodes the status of a framed HealthCheckResponse
// (field 1, a varint); unknown fields are skipped, as protobuf does.
func checkResponse(body []byte) (uint64, error) {
	if len(body) < 5 {
		return 0, fmt.Errorf("answer of %d bytes is not a gRPC message", len(body))
	}
	if body[0] != 0 {
		return 0, fmt.Errorf("compressed answers are not supported")
	}
	n := binary.BigEndian.Uint32(body[1:5])
	msg := body[5:]
	if uint32(len(msg)) < n {
		return 0, fmt.Errorf("answer cut short: %d of %d bytes", len(msg), n)
	}
	msg = msg[:n]
	var status uint64
	for len(msg) > 0 {
		key, k := binary.Uvarint(msg)
		if k <= 0 {
			return 0, fmt.Errorf("malformed answer")
		}
		msg = msg[k:]
		switch field, wire := key>>3, key&7; {
		case wire == 0:
			v, k := binary.Uvarint(msg)
			if k <= 0 {
				return 0, fmt.Errorf("malformed answer")
			}
			msg = msg[k:]
			if field == 1 {
				status = v
			}
		case wire == 2:
			l, k := binary.Uvarint(msg)
			if k <= 0 || uint64(len(msg)-k) < l {
				return 0, fmt.Errorf("malformed answer")
			}
			msg = msg[k+int(l):]
		case wire == 1 && len(msg) >= 8:
			msg = msg[8:]
		case wire == 5 && len(msg) >= 4:
			msg = msg[4:]
		default:
			return 0, fmt.Errorf("malformed answer")
		}
	}
	return status, nil // a missing field is 0: UNKNOWN
}
