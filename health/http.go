package health

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"

	"github.com/hailsd/hail/events"
)

// HTTP probes a URL as Consul does: 2xx is passing, 429 warning, any other
// status critical, and so are a connection error and the timeout.
// Redirects are not followed (a 3xx is critical: the probe asks whether
// this address serves, not where it sends). At most MaxOutput bytes of the
// body are read, into the output. Connections are kept between probes.
type HTTP struct {
	url, method string
	header      http.Header
	client      *http.Client
}

// NewHTTP makes the probe; method defaults to GET.
func NewHTTP(url, method string, header http.Header, tlsSkipVerify bool) *HTTP {
	if method == "" {
		method = http.MethodGet
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: tlsSkipVerify} // the check's owner asks for it (tls_skip_verify), as in Consul
	tr.MaxIdleConnsPerHost = 1
	return &HTTP{url: url, method: method, header: header.Clone(), client: &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Probe makes one request under ctx.
func (h *HTTP) Probe(ctx context.Context) Result {
	req, err := http.NewRequestWithContext(ctx, h.method, h.url, nil)
	if err != nil {
		return result(events.Critical, fmt.Sprintf("%s %s: %v", h.method, h.url, err))
	}
	for k, vs := range h.header {
		req.Header[k] = vs
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "hail-health-check")
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return result(events.Critical, fmt.Sprintf("%s %s: %v", h.method, h.url, err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, MaxOutput))
	out := fmt.Sprintf("%s %s: %s", h.method, h.url, resp.Status)
	if len(body) > 0 {
		out += "\n" + string(body)
	}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return result(events.Passing, out)
	case resp.StatusCode == http.StatusTooManyRequests:
		return result(events.Warning, out)
	default:
		return result(events.Critical, out)
	}
}

// Close releases the kept connections.
func (h *HTTP) Close() { h.client.CloseIdleConnections() }
