// Package admin is what every hail program serves on its HTTP address:
// Prometheus metrics and the health probes (and, when http.pprof asks,
// Go's profiles), and the server that serves them. The operator's console, which discovery nodes and the dev stack
// mount beside them, is the console package: programs without it (the
// router, echo) do not link it. Handlers are plain http.Handlers so a
// middleware (auth, TLS termination) can wrap them.
package admin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/hailsd/hail/config"
)

// Profiles says whether a program's address serves Go's profiles under
// /debug/pprof/: its http.pprof. Off by default, because a profile shows
// the program's internals, and /debug/pprof/cmdline its arguments, to
// whoever reaches the address, which has no authentication of its own.
type Profiles bool

// Handler serves /metrics (the program's set plus process metrics),
// /healthz (the process is up), /readyz (ready() is true), Go's profiles
// when profiles is true (serveProfiles), and, when ui is not nil, ui for
// every other path.
func Handler(set *metrics.Set, ready func() bool, ui http.Handler, profiles Profiles) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		set.WritePrometheus(w)
		metrics.WriteProcessMetrics(w)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	serveProfiles(mux, profiles)
	if ui != nil {
		mux.Handle("/", ui)
	}
	return mux
}

// serveProfiles serves net/http/pprof's handlers under /debug/pprof/ on
// mux when on: the index (which links every named profile: heap,
// goroutine, allocs, block, mutex, threadcreate), cmdline, profile (CPU,
// ?seconds=N), symbol and trace.
//
// Off, the path answers 404 whatever ui is mounted at "/", so that no
// handler behind it can serve it as if it were on. The handlers are
// mounted on mux, never through http.DefaultServeMux, where importing
// net/http/pprof (here, and in nats-server) registers them in every
// program that links it: no hail server serves http.DefaultServeMux.
func serveProfiles(mux *http.ServeMux, on Profiles) {
	if !on {
		mux.Handle("/debug/pprof/", http.NotFoundHandler())
		return
	}
	// Index serves the named profiles too: /debug/pprof/heap and the
	// like. A CPU profile or trace of ?seconds=N may outlast ReadTimeout:
	// net/http lifts the read deadline once a request's body is read, and
	// Serve sets no write timeout.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

// Listen binds h.Addr (which may ask for port 0; the listener says which
// it got), with TLS when h.TLS is set, so a program fails at start on an
// address or certificate it cannot have.
func Listen(h config.Listener) (net.Listener, error) {
	var tc *tls.Config
	switch {
	case h.TLS.Cert != "" && h.TLS.Key != "":
		// Loaded before listening, so a bad file fails the start, not the
		// first client.
		cert, err := tls.LoadX509KeyPair(h.TLS.Cert, h.TLS.Key)
		if err != nil {
			return nil, fmt.Errorf("http.tls: %w", err)
		}
		tc = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	case h.TLS.Cert != "" || h.TLS.Key != "":
		return nil, fmt.Errorf("http.tls: set both cert and key, or neither")
	}
	l, err := net.Listen("tcp", h.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", h.Addr, err)
	}
	if tc != nil {
		l = tls.NewListener(l, tc)
	}
	return l, nil
}

// ReadTimeout bounds the reading of a whole request, body included, on
// every server Serve runs: a client that trickles a body is cut off then,
// as one that trickles its headers is after 5 s.
const ReadTimeout = 10 * time.Second

// Serve serves h on l until ctx ends, then shuts down gracefully, and
// returns once the server has stopped: a program runs it in its errgroup.
func Serve(ctx context.Context, l net.Listener, h http.Handler, log *slog.Logger) error {
	return serve(ctx, l, h, log, ReadTimeout)
}

func serve(ctx context.Context, l net.Listener, h http.Handler, log *slog.Logger, readTimeout time.Duration) error {
	// Requests' contexts end when the server shuts down, so long-lived
	// ones (the console's event stream) do not hold the shutdown up.
	base, stopRequests := context.WithCancel(context.WithoutCancel(ctx))
	// A slow or idle client cannot hold a connection: the headers must
	// come within 5 s, the whole request within readTimeout, and an idle
	// keep-alive ends after 2 minutes. net/http lifts the read deadline
	// once the body is read, so a long answer (the console's event
	// stream) is not cut by it.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: readTimeout, IdleTimeout: 2 * time.Minute,
		BaseContext: func(net.Listener) context.Context { return base }}
	srv.RegisterOnShutdown(stopRequests)
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Serve(l) }()
	log.Info("serving HTTP", "addr", l.Addr().String())
	select {
	case err := <-stopped:
		stopRequests()
		return fmt.Errorf("HTTP server on %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-stopped; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
