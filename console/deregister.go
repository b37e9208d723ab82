package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
)

// ErrUpstream is discovery refusing, or not answering, what the page
// asked of it.
var ErrUpstream = errors.New("discovery")

// deregisterTimeout bounds the wait for discovery's answer.
const deregisterTimeout = 2 * time.Second

// operatorReason is the reason a deregistration from the page carries.
const operatorReason = "deregistered by an operator (console)"

// deregistrar removes an instance from the registry as an operator: on
// P.deregister.<S>.<id>, which PROTOCOL v1.6 guards so that only the
// identity itself and the admin role may publish there (and an open
// region lets anyone), and which discovery answers on admin's inbox.
type deregistrar struct {
	nc       *nats.Conn
	subjects events.Subjects
}

// deregister asks discovery to remove rec and waits for its answer.
func (d deregistrar) deregister(ctx context.Context, rec events.InstanceRecord) error {
	data, err := json.Marshal(events.Deregister{ID: rec.ID, Service: rec.Service, Reason: operatorReason})
	if err != nil {
		return fmt.Errorf("encode deregister: %w", err)
	}
	subject := d.subjects.Deregister(rec.Service) + "." + rec.ID
	ctx, cancel := context.WithTimeout(ctx, deregisterTimeout)
	defer cancel()
	reply, err := d.nc.RequestWithContext(ctx, subject, data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("%w: no discovery node hears %s", ErrUpstream, subject)
	case err != nil:
		// A publish the server refuses shows here as no answer.
		return fmt.Errorf("%w: no answer to %s within %v (may the console's user publish it? set console.admin to the admin role, admin.env of secure init): %w",
			ErrUpstream, subject, deregisterTimeout, err)
	}
	if code, text, isErr := events.ReplyError(reply); isErr {
		return fmt.Errorf("%w refused the deregistration: %d %s", ErrUpstream, code, text)
	}
	return nil
}

// deregisterHandler is POST /api/instances/{id}/deregister.
func deregisterHandler(r *Region) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		id := req.PathValue("id")
		if err := events.ValidateID(id); err != nil {
			r.refused.Inc()
			writeError(w, fmt.Errorf("%w: %w", ErrBadInput, err))
			return
		}
		rec, found := r.reg.ByID(id)
		if !found {
			writeError(w, fmt.Errorf("%w: no instance %s is registered", ErrNotFound, id))
			return
		}
		if err := r.dereg.deregister(req.Context(), rec); err != nil {
			r.log.Warn("deregistration refused", "service", rec.Service, "instance_id", id, "err", err)
			writeError(w, err)
			return
		}
		r.wrote.Inc()
		r.log.Info("deregistered by an operator", "service", rec.Service, "instance_id", id)
		writeJSON(w, http.StatusOK, map[string]string{"service": rec.Service, "id": id, "status": string(events.Deregistered)})
	}
}
