// Package admin is a hail program's HTTP side: Prometheus metrics, health
// probes, and on discovery nodes and the dev stack the operator's page and
// its JSON API (Region). Handlers are plain http.Handlers so a middleware
// (auth, TLS termination) can wrap them.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Handler serves /metrics (the program's set plus process metrics),
// /healthz (the process is up), /readyz (ready() is true) and, when ui is
// not nil, ui for every other path.
func Handler(set *metrics.Set, ready func() bool, ui http.Handler) http.Handler {
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
	if ui != nil {
		mux.Handle("/", ui)
	}
	return mux
}

// Serve listens on addr and serves h until ctx ends, then shuts down
// gracefully. It returns once the listener is bound and serving has
// started, reporting the bound address (addr may ask for port 0).
func Serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger) (net.Addr, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	// Requests' contexts end when the server shuts down, so long-lived
	// ones (the page's event stream) do not hold the shutdown up.
	base, stopRequests := context.WithCancel(context.WithoutCancel(ctx))
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, BaseContext: func(net.Listener) context.Context { return base }}
	srv.RegisterOnShutdown(stopRequests)
	go func() {
		if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			log.Error("HTTP server stopped", "addr", l.Addr().String(), "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("serving HTTP", "addr", l.Addr().String())
	return l.Addr(), nil
}
