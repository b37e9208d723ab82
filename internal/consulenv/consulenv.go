// Package consulenv runs hail's Consul interfaces for a test: a real
// embedded NATS server with the buckets, a registry follower of
// hail_instances, the consul package's HTTP API and DNS on loopback
// ports, and records written into the bucket as a discovery node writes
// them (KV puts of valid records). The consul package's tests and the
// real clients' tests (consul/consultest) share it.
package consulenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/consul"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/regiontest"
	"github.com/hailsd/hail/registry"
)

// Datacenter is the region the interfaces answer for.
const Datacenter = "local"

// Options adjust the interfaces.
type Options struct {
	HTTP consul.HTTPOptions
	// DNS; the zero value takes consul.DefaultDNS (its Addr is ignored:
	// DNS listens on a free loopback port).
	DNS *consul.DNSConfig
}

// Env is the running interfaces.
type Env struct {
	T      testing.TB
	Region *regiontest.Region
	View   *consul.View
	DNS    *consul.DNS
	// HTTP is the base URL of the Consul API (http://127.0.0.1:port).
	HTTP string
	// DNSAddr is host:port of DNS, UDP and TCP.
	DNSAddr string
	Set     *metrics.Set
	node    string
	seq     atomic.Int64
}

// Start runs them until the test ends.
func Start(t testing.TB, o Options) *Env {
	t.Helper()
	r := regiontest.New(t)
	e := &Env{T: t, Region: r, Set: metrics.NewSet(), node: uuid.NewString()}
	f := registry.NewFollower(r.KV.Instances, registry.FollowConfig{})
	r.Run("registry follower", f.Run)
	e.View = consul.NewView(Datacenter)
	r.Run("consul view", func(ctx context.Context) error { return e.View.Run(ctx, f) })
	select {
	case <-e.View.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("view not ready within 10s")
	}
	if o.HTTP.Metrics == nil {
		o.HTTP.Metrics = e.Set
	}
	srv := httptest.NewServer(consul.Handler(e.View, o.HTTP))
	t.Cleanup(srv.Close)
	e.HTTP = srv.URL
	dc := consul.DefaultDNS()
	if o.DNS != nil {
		dc = *o.DNS
	}
	pc, l, err := consul.ListenDNS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.DNSAddr = pc.LocalAddr().String()
	e.DNS = consul.NewDNS(e.View, dc, e.Set)
	r.Run("dns", func(ctx context.Context) error { return e.DNS.Serve(ctx, pc, l, nil) })
	return e
}

// Record is a valid passing record of service with a new id, edited by
// edit: what a discovery node writes for an instance at 127.0.0.<n>:8080.
func (e *Env) Record(service string, edit func(*events.InstanceRecord)) events.InstanceRecord {
	n := e.seq.Add(1)
	now := time.Now().UTC()
	rec := events.InstanceRecord{
		Announce: events.Announce{
			ID: uuid.NewString(), Service: service, Endpoints: []events.Endpoint{}, Weight: events.DefaultWeight,
			Address: fmt.Sprintf("127.0.%d.%d", n/250, n%250+1), Port: 8080,
		},
		Status: events.Passing, Node: e.node, RegisteredAt: now, UpdatedAt: now,
	}
	if edit != nil {
		edit(&rec)
	}
	return rec
}

// Put writes rec into hail_instances and waits until the view holds it.
func (e *Env) Put(rec events.InstanceRecord) uint64 {
	e.T.Helper()
	data, err := json.Marshal(rec)
	if err != nil {
		e.T.Fatal(err)
	}
	rev, err := e.Region.KV.Instances.Put(e.T.Context(), rec.Key(), data)
	if err != nil {
		e.T.Fatalf("put %s: %v", rec.Key(), err)
	}
	e.waitRev(rev)
	return rev
}

// PutAll writes recs into hail_instances, asynchronously, and waits
// until the view holds the last: for thousands of records.
func (e *Env) PutAll(recs []events.InstanceRecord) {
	e.T.Helper()
	js, err := jetstream.New(e.Region.NC)
	if err != nil {
		e.T.Fatal(err)
	}
	var last jetstream.PubAckFuture
	for i, rec := range recs {
		data, err := json.Marshal(rec)
		if err != nil {
			e.T.Fatal(err)
		}
		if last, err = js.PublishAsync("$KV."+bus.InstancesBucket+"."+rec.Key(), data); err != nil {
			e.T.Fatal(err)
		}
		if i%1000 == 999 || i == len(recs)-1 { // within the client's bound on pending acks
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(60 * time.Second):
				e.T.Fatal("puts not acknowledged within 60s")
			}
		}
	}
	select {
	case ack := <-last.Ok():
		e.waitRev(ack.Sequence)
	case err := <-last.Err():
		e.T.Fatal(err)
	}
}

// Delete removes rec from hail_instances and waits until the view has
// taken the delete in.
func (e *Env) Delete(rec events.InstanceRecord) {
	e.T.Helper()
	if err := e.Region.KV.Instances.Delete(e.T.Context(), rec.Key()); err != nil {
		e.T.Fatalf("delete %s: %v", rec.Key(), err)
	}
	st, err := e.Region.KV.Instances.Status(e.T.Context())
	if err != nil {
		e.T.Fatal(err)
	}
	e.waitRev(st.(interface{ StreamInfo() *jetstream.StreamInfo }).StreamInfo().State.LastSeq)
}

// waitRev waits until the view has taken in revision rev.
func (e *Env) waitRev(rev uint64) {
	e.T.Helper()
	bustest.Eventually(e.T, 10*time.Second, func() error {
		if got := e.View.Revision(); got < rev {
			return fmt.Errorf("view at revision %d, want %d", got, rev)
		}
		return nil
	})
}
