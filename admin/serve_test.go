package admin_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hailsd/hail/admin"
)

// serveBody runs a server whose handler reads the body and then answers
// after wait, with a read timeout of 300 ms; it returns the address and
// the handlers' outcomes.
func serveBody(t *testing.T, wait time.Duration) (string, <-chan error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 4)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			read <- err
			http.Error(w, "body: "+err.Error(), http.StatusRequestTimeout)
			return
		}
		select {
		case <-time.After(wait):
			read <- nil
			fmt.Fprint(w, "done")
		case <-r.Context().Done():
			read <- fmt.Errorf("the request's context ended: %w", r.Context().Err())
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- admin.ServeWithReadTimeout(ctx, l, h, slog.New(slog.DiscardHandler), 300*time.Millisecond)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return l.Addr().String(), read
}

// A client that trickles a body, a byte every 20 ms (no idle timeout
// would notice), is cut off at the read timeout, long before its body
// would be complete.
func TestSlowBodyCut(t *testing.T) {
	addr, read := serveBody(t, 0)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const size = 3000 // 60 s at a byte every 20 ms
	if _, err := fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_, _ = io.Copy(io.Discard, conn) // until the server closes
	}()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for sent := 0; ; sent++ {
		select {
		case <-closed:
			select {
			case err := <-read:
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					t.Errorf("the handler read %v, want a timeout", err)
				}
			default:
				t.Error("the connection closed before the handler saw the body fail")
			}
			return
		case <-deadline:
			t.Fatalf("still reading the body after %d of %d bytes", sent, size)
		case <-tick.C:
			if sent == size {
				t.Fatal("the whole body was taken")
			}
			_, _ = conn.Write([]byte("x"))
		}
	}
}

// A body sent in time is read, and the answer may take longer than the
// read timeout: the deadline goes with the body, the request's context
// lives on.
func TestLongAnswerAfterBody(t *testing.T) {
	addr, read := serveBody(t, time.Second)
	resp, err := http.Post("http://"+addr+"/", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(bufio.NewReader(resp.Body))
	if err := <-read; err != nil || string(body) != "done" {
		t.Errorf("answered %d %q, handler %v", resp.StatusCode, body, err)
	}
}
