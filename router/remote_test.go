package router_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/router"
)

// abroad starts an instance of echo that the region's discovery does not
// know, and puts its passing record into region's stand-in registry, from
// which hail_remote sources it: an instance of another region, reached on
// the same server.
func (e *env) abroad(region jetstream.KeyValue) (*fakeinst.Instance, events.InstanceRecord) {
	e.T.Helper()
	i := e.instance(fakeinst.Options{Manual: true})
	a, err := events.DecodeAnnounce(i.AnnounceData())
	if err != nil {
		e.T.Fatal(err)
	}
	rec := events.InstanceRecord{Announce: a, Status: events.Passing, Node: uuid.NewString()}
	e.putAbroad(region, rec)
	return i, rec
}

func (e *env) putAbroad(region jetstream.KeyValue, rec events.InstanceRecord) {
	e.T.Helper()
	data, err := json.Marshal(rec)
	if err != nil {
		e.T.Fatal(err)
	}
	if _, err := region.Put(e.T.Context(), rec.Key(), data); err != nil {
		e.T.Fatal(err)
	}
}

// answers waits until every request for echo is answered by want.
func (e *env) answers(want string) {
	e.T.Helper()
	bustest.Eventually(e.T, 15*time.Second, func() error {
		for range 20 {
			m := e.Request(subjects.Route("echo", "say"), nil)
			if code, text, isErr := events.ReplyError(m); isErr {
				return fmt.Errorf("%d %s", code, text)
			}
			if string(m.Data) != want {
				return fmt.Errorf("answered by %s, want %s", m.Data, want)
			}
		}
		return nil
	})
}

// abroadReady waits until the router may route echo to regions, in that
// order.
func (e *env) abroadReady(regions ...string) {
	e.T.Helper()
	bustest.Eventually(e.T, 15*time.Second, func() error {
		v := e.router.Table().View("echo")
		if v == nil || fmt.Sprint(v.Abroad) != fmt.Sprint(regions) {
			return fmt.Errorf("view %+v, want abroad %v", v, regions)
		}
		return nil
	})
}

// A service is routed at home while an instance there passes, to another
// region only when none does, nearest first by the router's
// remote_regions, and home again as soon as one passes; with continuous
// routing and one retry, no request fails through either move.
func TestFailoverToOtherRegionAndBack(t *testing.T) {
	e := newEnvWith(t, router.TableConfig{RemoteRegions: []string{"us", "eu"}, RemoteStale: 3 * time.Second})
	regions := bustest.RemoteBucket(t, e.NC, "eu", "us")
	e.putRoute("echo", `{"retries":1,"retry_on_timeout":true,"timeout_ms":4000}`)
	home := e.instance(fakeinst.Options{AnnounceConn: true})
	eu, _ := e.abroad(regions["eu"])
	us, usRec := e.abroad(regions["us"])
	e.answers(home.ID)
	e.abroadReady("us", "eu")
	m := e.Request(subjects.Route("echo", "say"), nil)
	if m.Header.Get(events.HeaderRouter) != e.router.ID() || m.Header.Get(events.HeaderInstance) != home.ID {
		t.Fatalf("headers %v, want Hail-Router %s and Hail-Instance %s", m.Header, e.router.ID(), home.ID)
	}

	l := e.load(8, subjects.Route("echo", "say"), nil, 10*time.Second)
	waitCount := func(n int) {
		t.Helper()
		bustest.Eventually(t, 15*time.Second, func() error {
			if l.count() < n {
				return errors.New("load still running")
			}
			return nil
		})
	}
	waitCount(200)
	home.Kill()
	// Nearest first: us is named first.
	bustest.Eventually(t, 15*time.Second, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.by[us.ID] < 100 {
			return fmt.Errorf("us answered %d", l.by[us.ID])
		}
		return nil
	})
	// Announcing its conn, as home does (PROTOCOL v1.4): a request sent
	// to it as it is killed below ends at its disconnect and is tried
	// again elsewhere, not held for the route's timeout, longer than the
	// test's 2 s wait for an answer.
	back := e.instance(fakeinst.Options{AnnounceConn: true})
	bustest.Eventually(t, 15*time.Second, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.by[back.ID] < 100 {
			return fmt.Errorf("the new instance at home answered %d", l.by[back.ID])
		}
		return nil
	})
	l.finish()
	if len(l.errors) > 0 {
		t.Errorf("%d requests, failures %s", l.total, l.errorList())
	}
	if l.by[eu.ID] != 0 {
		t.Errorf("eu answered %d while us, named nearer, could", l.by[eu.ID])
	}
	t.Logf("%d requests: home %d, us %d, home again %d", l.total, l.by[home.ID], l.by[us.ID], l.by[back.ID])
	e.answers(back.ID)

	// us drained: the next region, eu, takes over.
	usRec.Weight = 0
	e.putAbroad(regions["us"], usRec)
	back.Kill()
	e.answers(eu.ID)
}

// A region whose source has stopped is stale: not routed to, even with no
// instance at home.
func TestStaleRegionNotRoutedTo(t *testing.T) {
	e := newEnvWith(t, router.TableConfig{RemoteRegions: []string{"eu"}, RemoteStale: 3 * time.Second})
	regions := bustest.RemoteBucket(t, e.NC, "eu")
	eu, _ := e.abroad(regions["eu"])
	e.answers(eu.ID)
	js, err := jetstream.New(e.NC)
	if err != nil {
		t.Fatal(err)
	}
	// eu's registry goes: hail_remote keeps its last records, but its
	// source stops.
	if err := js.DeleteKeyValue(t.Context(), "eu_instances"); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 20*time.Second, func() error {
		m := e.Request(subjects.Route("echo", "say"), nil)
		if code, _, _ := events.ReplyError(m); code != events.CodeUnavailable && code != events.CodeNotFound {
			return fmt.Errorf("reply %q (code %d) from a stale region", m.Data, code)
		}
		return nil
	})
}
