// Package greeter is the dev stack's example of a service that does not
// speak NATS: a plain net/http server that the agent registers and checks.
// POST /health/fail makes its /health answer 503 (and the agent's check,
// the record and a health event follow); POST /health/recover undoes it.
package greeter

import (
	"fmt"
	"net/http"
	"sync/atomic"
)

// Server is the greeter.
type Server struct{ failing atomic.Bool }

// Handler serves GET /hello[?name=], GET /health, POST /health/fail and
// POST /health/recover.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("name")
		if name == "" {
			name = "world"
		}
		fmt.Fprintf(w, "hello, %s, from greeter\n", name)
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		if s.failing.Load() {
			http.Error(w, "failing: POST /health/recover to heal", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /health/fail", func(w http.ResponseWriter, _ *http.Request) {
		s.failing.Store(true)
		fmt.Fprintln(w, "/health now answers 503")
	})
	mux.HandleFunc("POST /health/recover", func(w http.ResponseWriter, _ *http.Request) {
		s.failing.Store(false)
		fmt.Fprintln(w, "/health now answers 200")
	})
	return mux
}
