package agent

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
)

// Handler is the agent's API (PROTOCOL v1.1): GET /v1/checks lists every
// check's result by service; PUT /v1/check/<service>/<check>/pass|warn|fail
// reports a TTL check, the body its output. Unknown service or check: 404;
// a check that is not ttl, or another word than pass, warn or fail: 400.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/checks", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, a.Checks())
	})
	mux.HandleFunc("PUT /v1/check/{service}/{check}/{report}", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body: " + err.Error()})
			return
		}
		res, err := a.Report(r.PathValue("service"), r.PathValue("check"), r.PathValue("report"), string(body))
		switch {
		case errors.Is(err, ErrNotFound):
			writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
		case err != nil:
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		default:
			writeJSON(w, http.StatusOK, res)
		}
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
