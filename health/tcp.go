package health

import (
	"context"
	"fmt"
	"net"

	"github.com/hailsd/hail/events"
)

// TCP probes an address by opening a connection: passing when it opens;
// critical when it is refused, unreachable or does not open in time.
type TCP struct{ Addr string }

// Probe dials once under ctx and closes at once.
func (c TCP) Probe(ctx context.Context) Result {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.Addr)
	if err != nil {
		return result(events.Critical, fmt.Sprintf("TCP connect %s: %v", c.Addr, err))
	}
	_ = conn.Close()
	return result(events.Passing, fmt.Sprintf("TCP connect %s: success", c.Addr))
}
