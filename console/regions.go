package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hailsd/hail/events"
)

// RegionView is one region as discovery knows it (PROTOCOL v1.5): this
// console's own, and each of its nodes' remote_regions, with whether its
// registry has gone stale.
type RegionView struct {
	Region    string `json:"region"`
	Services  int    `json:"services"`
	Instances int    `json:"instances"`
	Passing   int    `json:"passing"`
	Stale     bool   `json:"stale,omitempty"`
}

// regionsWait bounds the page's question to discovery: a page is not held
// up long by a node that does not answer.
const regionsWait = 500 * time.Millisecond

// Regions asks discovery for every region's services (".services" with
// region "*") and sums them by region, the own region first. A region
// with no service registered is not listed.
func (r *Region) Regions(ctx context.Context) ([]RegionView, error) {
	var rows []events.ServiceSummary
	if err := r.ask(ctx, r.cfg.Subjects.DiscoveryServices(), events.ServicesQuery{Region: events.AllRegions}, &rows); err != nil {
		return nil, err
	}
	var out []RegionView
	at := map[string]int{}
	for _, row := range rows {
		i, ok := at[row.Region]
		if !ok {
			i = len(out)
			at[row.Region] = i
			out = append(out, RegionView{Region: row.Region, Stale: row.Stale})
		}
		out[i].Services++
		out[i].Instances += row.Instances
		out[i].Passing += row.Passing
	}
	if out == nil {
		out = []RegionView{}
	}
	return out, nil
}

// RegionInstances asks discovery for a region's instances (one region, or
// "*"), of service if not empty: each with its region, and stale when
// that region's registry is.
func (r *Region) RegionInstances(ctx context.Context, region, service string) ([]events.InstanceRecord, error) {
	q := events.InstancesQuery{Service: service, Region: region}
	if err := q.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	var recs []events.InstanceRecord
	return recs, r.ask(ctx, r.cfg.Subjects.DiscoveryInstances(), q, &recs)
}

// ask sends q to discovery on subject and decodes its answer into v; an
// error body (a 400 or 503) is an error.
func (r *Region) ask(ctx context.Context, subject string, q, v any) error {
	data, err := json.Marshal(q)
	if err != nil {
		return err
	}
	m, err := r.nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		return fmt.Errorf("ask discovery on %s: %w", subject, err)
	}
	var e events.ErrorBody
	if json.Unmarshal(m.Data, &e) == nil && e.Error != "" {
		if e.Code == events.CodeBadRequest {
			return fmt.Errorf("%w: %s", ErrBadInput, e.Error)
		}
		return errors.New(e.Error)
	}
	if err := json.Unmarshal(m.Data, v); err != nil {
		return fmt.Errorf("discovery's answer on %s: %w", subject, err)
	}
	return nil
}
