package consul

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// maxTCPConns bounds the TCP connections served at once; more wait in the
// kernel's backlog.
const maxTCPConns = 512

// tcpIdle is how long a TCP connection may wait for its next question.
const tcpIdle = 10 * time.Second

// ListenDNS binds addr for UDP and TCP on the same port (a port of 0 picks
// one free for both), so a program fails at start on an address it
// cannot have.
func ListenDNS(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dns.addr %q: %w", addr, err)
	}
	for try := 0; ; try++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("listen udp %s: %w", addr, err)
		}
		got := strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
		l, err := net.Listen("tcp", net.JoinHostPort(host, got))
		if err == nil {
			return pc, l, nil
		}
		_ = pc.Close()
		if port != "0" || try == 10 {
			return nil, nil, fmt.Errorf("listen tcp %s: %w", net.JoinHostPort(host, got), err)
		}
	}
}

// Serve answers DNS on pc (UDP) and l (TCP), either may be nil, until ctx
// ends, and returns once both have stopped.
func (d *DNS) Serve(ctx context.Context, pc net.PacketConn, l net.Listener, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	if pc != nil {
		log.Info("serving DNS", "addr", pc.LocalAddr().String(), "net", "udp", "domains", d.String())
		wg.Go(func() { errs <- d.serveUDP(ctx, pc) })
	}
	if l != nil {
		wg.Go(func() { errs <- d.serveTCP(ctx, l) })
	}
	stop := context.AfterFunc(ctx, func() {
		if pc != nil {
			_ = pc.Close()
		}
		if l != nil {
			_ = l.Close()
		}
	})
	defer stop()
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// serveUDP reads questions with one reader per CPU, each answering what
// it read: no goroutine per packet.
func (d *DNS) serveUDP(ctx context.Context, pc net.PacketConn) error {
	var wg sync.WaitGroup
	errs := make([]error, runtime.GOMAXPROCS(0))
	for i := range errs {
		wg.Go(func() {
			in := make([]byte, dns.MaxMsgSize)
			sc := newScratch()
			for {
				n, from, err := pc.ReadFrom(in)
				if err != nil {
					if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
						errs[i] = fmt.Errorf("dns udp: %w", err)
					}
					return
				}
				if resp := d.handle(in[:n], true, sc); resp != nil {
					_, _ = pc.WriteTo(resp, from)
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// serveTCP serves each connection's questions in turn (RFC 7766 framing:
// a two-byte length before each message).
func (d *DNS) serveTCP(ctx context.Context, l net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, maxTCPConns)
	var mu sync.Mutex
	open := map[net.Conn]struct{}{}
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		for c := range open {
			_ = c.Close()
		}
	})
	defer stop()
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		c, err := l.Accept()
		if err != nil {
			<-slots
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("dns tcp: %w", err)
		}
		mu.Lock()
		open[c] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			defer func() {
				mu.Lock()
				delete(open, c)
				mu.Unlock()
				_ = c.Close()
				<-slots
			}()
			d.serveConn(c)
		})
	}
}

func (d *DNS) serveConn(c net.Conn) {
	in := make([]byte, dns.MaxMsgSize)
	sc := newScratch()
	var size [2]byte
	for {
		_ = c.SetDeadline(time.Now().Add(tcpIdle))
		var n uint16
		if err := binary.Read(c, binary.BigEndian, &n); err != nil {
			return
		}
		if _, err := io.ReadFull(c, in[:n]); err != nil {
			return
		}
		resp := d.handle(in[:n], false, sc)
		if resp == nil {
			continue
		}
		binary.BigEndian.PutUint16(size[:], uint16(len(resp)))
		bufs := net.Buffers{size[:], resp}
		if _, err := bufs.WriteTo(c); err != nil {
			return
		}
	}
}
