package discovery

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/registry"
)

// queries answers hail.discovery.services, .instances and .rtt: from the
// registry and the last round's RTTs in memory, on the NATS callback's
// goroutine (both are safe for that), never on the node's loop. A query
// of another region (PROTOCOL v1.5) reads hail_remote.
type queries struct {
	node   string
	region string
	reg    *registry.Follower
	remote *remote
	rtts   func() map[string]time.Duration
	reply  replier
}

// remoteReadTimeout bounds a region query's read of hail_remote.
const remoteReadTimeout = 5 * time.Second

func (q queries) services(m *nats.Msg) {
	if err := events.CheckSize("services query", m.Data); err != nil {
		q.reply.reject(m, reasonTooLarge, err)
		return
	}
	sq, err := events.DecodeServicesQuery(m.Data)
	if err != nil {
		q.reply.reject(m, reasonBadQuery, err)
		return
	}
	if sq.Region == "" {
		q.reply.json(m, q.reg.Services())
		return
	}
	regions, err := q.regions(sq.Region)
	if err != nil {
		q.reply.reject(m, reasonBadQuery, err)
		return
	}
	out := []events.ServiceSummary{}
	for _, region := range regions {
		reg, stale, err := q.registryOf(region, events.InstancesQuery{})
		if err != nil {
			q.reply.fail(m, err)
			return
		}
		for _, s := range reg.Services() {
			s.Region, s.Stale = region, stale
			out = append(out, s)
		}
	}
	q.reply.json(m, out)
}

func (q queries) instances(m *nats.Msg) {
	iq, err := events.DecodeInstancesQuery(m.Data)
	if err != nil {
		q.reply.reject(m, reasonBadQuery, err)
		return
	}
	if iq.Region == "" {
		q.reply.json(m, q.reg.Instances(iq))
		return
	}
	regions, err := q.regions(iq.Region)
	if err != nil {
		q.reply.reject(m, reasonBadQuery, err)
		return
	}
	out := []events.InstanceRecord{}
	for _, region := range regions {
		reg, _, err := q.registryOf(region, iq)
		if err != nil {
			q.reply.fail(m, err)
			return
		}
		for _, rec := range reg.Instances(iq) {
			rec.Region = region
			out = append(out, rec)
		}
	}
	q.reply.json(m, out)
}

// regions are the regions a query's region names: the own region first,
// then the remote ones in the order of remote_regions.
func (q queries) regions(region string) ([]string, error) {
	switch {
	case region == events.AllRegions:
		return append([]string{q.region}, q.remote.cfg.regions...), nil
	case region == q.region || q.remote.knows(region):
		return []string{region}, nil
	}
	return nil, fmt.Errorf("%w: region %q is neither this node's (%s) nor one of its remote_regions %v", events.ErrInvalid, region, q.region, q.remote.cfg.regions)
}

// registryOf is region's registry for a query: the own region's follower,
// or a registry made from one read of hail_remote (the service filter
// applied while reading), with whether that region is stale.
func (q queries) registryOf(region string, iq events.InstancesQuery) (*registry.Registry, bool, error) {
	if region == q.region {
		return q.reg.Registry, false, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), remoteReadTimeout)
	defer cancel()
	recs, revs, err := q.remote.records(ctx, region, iq)
	if err != nil {
		return nil, false, err
	}
	reg := registry.New()
	for i, rec := range recs {
		reg.Put(rec, revs[i])
	}
	return reg, q.remote.source(region).Stale, nil
}

func (q queries) rtt(m *nats.Msg) {
	rtts := q.rtts()
	rep := events.RTTReport{Node: q.node, RTTMS: make(map[string]float64, len(rtts))}
	for id, d := range rtts {
		rep.RTTMS[id] = float64(d.Microseconds()) / 1000
	}
	q.reply.json(m, rep)
}
