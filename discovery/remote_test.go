package discovery_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/internal/regiontest"
)

// twoRegions runs eu and us, each with a discovery node that sources the
// other, and fake echo instances: two in eu, one in us.
type twoRegions struct {
	l      *regiontest.Linked
	eu, us *regiontest.Region
	inEU   []*fakeinst.Instance
	inUS   []*fakeinst.Instance
}

func startTwoRegions(t *testing.T, stale time.Duration) *twoRegions {
	t.Helper()
	l := regiontest.NewLinked(t, "eu", "us")
	tr := &twoRegions{l: l, eu: l.Region("eu"), us: l.Region("us")}
	tr.eu.StartNode(discovery.Config{RemoteRegions: []string{"us"}, RemoteStale: stale})
	tr.us.StartNode(discovery.Config{RemoteRegions: []string{"eu"}, RemoteStale: stale})
	for range 2 {
		tr.inEU = append(tr.inEU, fakeinst.Start(t, tr.eu.URL, fakeinst.Options{Service: "echo"}))
	}
	tr.inUS = append(tr.inUS, fakeinst.Start(t, tr.us.URL, fakeinst.Options{Service: "echo"}))
	return tr
}

func ids(is []*fakeinst.Instance) []string {
	out := make([]string, len(is))
	for i, in := range is {
		out[i] = in.ID
	}
	slices.Sort(out)
	return out
}

// instances asks region r's discovery for the instances of query q.
func instances(t *testing.T, r *regiontest.Region, q events.InstancesQuery) ([]events.InstanceRecord, error) {
	t.Helper()
	data, _ := json.Marshal(q)
	m, err := r.NC.Request(events.Subjects{}.DiscoveryInstances(), data, 10*time.Second)
	if err != nil {
		return nil, err
	}
	if m.Header.Get("Nats-Service-Error-Code") != "" || strings.Contains(string(m.Data), `"error"`) {
		return nil, fmt.Errorf("%s", m.Data)
	}
	var recs []events.InstanceRecord
	return recs, json.Unmarshal(m.Data, &recs)
}

func idsOf(recs []events.InstanceRecord) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	slices.Sort(out)
	return out
}

// Each region keeps its own registry; hail_remote holds the other's under
// <region>.<service>.<id>; queries take region.
func TestRegionsKeptApartAndSourced(t *testing.T) {
	tr := startTwoRegions(t, 10*time.Second)
	for _, c := range []struct {
		r    *regiontest.Region
		name string
		own  []*fakeinst.Instance
	}{{tr.eu, "eu", tr.inEU}, {tr.us, "us", tr.inUS}} {
		got := c.r.Instances()
		var keys []string
		for key, rec := range got {
			keys = append(keys, key)
			if rec.Region != c.name {
				t.Errorf("%s's hail_instances %s: region %q, want %q", c.name, key, rec.Region, c.name)
			}
		}
		if want := ids(c.own); !slices.Equal(idsOfMap(got), want) {
			t.Errorf("%s's hail_instances holds %v, want its own %v", c.name, keys, want)
		}
	}
	// eu's hail_remote fills with us's instance, under us.<service>.<id>.
	js, err := jetstream.New(tr.eu.NC)
	if err != nil {
		t.Fatal(err)
	}
	var remote jetstream.KeyValue
	bustest.Eventually(t, 30*time.Second, func() error {
		if remote, err = js.KeyValue(context.Background(), discovery.RemoteBucket); err != nil {
			return err
		}
		_, err := remote.Get(context.Background(), "us.echo."+tr.inUS[0].ID)
		return err
	})
	keys, err := remote.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for k := range keys.Keys() {
		if !strings.HasPrefix(k, "us.echo.") {
			t.Errorf("eu's hail_remote holds %s; want only us.echo.<id>", k)
		}
	}
	// us's source is fresh once its first check has seen it.
	bustest.Eventually(t, 30*time.Second, func() error {
		recs, err := instances(t, tr.eu, events.InstancesQuery{Region: "us"})
		if err != nil || len(recs) != 1 || recs[0].Stale {
			return fmt.Errorf("us seen from eu: %+v, %v", recs, err)
		}
		return nil
	})
	// Queries: absent region the own only, a named region, every region.
	for _, c := range []struct {
		name   string
		q      events.InstancesQuery
		want   []string
		region map[string]string // id → region in the answer
	}{
		{"own", events.InstancesQuery{Service: "echo"}, ids(tr.inEU), nil},
		{"us", events.InstancesQuery{Service: "echo", Region: "us"}, ids(tr.inUS), map[string]string{tr.inUS[0].ID: "us"}},
		{"all", events.InstancesQuery{Region: "*"}, ids(append(slices.Clone(tr.inEU), tr.inUS...)),
			map[string]string{tr.inUS[0].ID: "us", tr.inEU[0].ID: "eu", tr.inEU[1].ID: "eu"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			recs, err := instances(t, tr.eu, c.q)
			if err != nil {
				t.Fatal(err)
			}
			if got := idsOf(recs); !slices.Equal(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			for _, rec := range recs {
				if want, ok := c.region[rec.ID]; ok && rec.Region != want {
					t.Errorf("%s: region %q, want %q", rec.ID, rec.Region, want)
				}
				if rec.Stale {
					t.Errorf("%s: stale in a linked region", rec.ID)
				}
			}
		})
	}
	// .services: one row per region and service.
	m, err := tr.eu.NC.Request(events.Subjects{}.DiscoveryServices(), []byte(`{"region":"*"}`), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var rows []events.ServiceSummary
	if err := json.Unmarshal(m.Data, &rows); err != nil {
		t.Fatalf("%v: %s", err, m.Data)
	}
	want := []events.ServiceSummary{{Service: "echo", Instances: 2, Passing: 2, Region: "eu"}, {Service: "echo", Instances: 1, Passing: 1, Region: "us"}}
	if !slices.Equal(rows, want) {
		t.Fatalf("services by region: %+v, want %+v", rows, want)
	}
	// A region neither own nor remote is bad input.
	if _, err := instances(t, tr.eu, events.InstancesQuery{Region: "ap"}); err == nil || !strings.Contains(err.Error(), "remote_regions") {
		t.Fatalf("query of an unknown region: %v, want an error naming remote_regions", err)
	}
}

func idsOfMap(m map[string]events.InstanceRecord) []string {
	var out []string
	for _, rec := range m {
		out = append(out, rec.ID)
	}
	slices.Sort(out)
	return out
}

// A region cut off keeps serving itself; the other marks it stale after
// remote_stale and fresh again once the link is back, with what it
// registered meanwhile.
func TestCutRegionServesItselfAndGoesStale(t *testing.T) {
	tr := startTwoRegions(t, 3*time.Second)
	remoteOf := func(q events.InstancesQuery, wantStale bool, wantIDs []string) func() error {
		return func() error {
			recs, err := instances(t, tr.eu, q)
			if err != nil {
				return err
			}
			if got := idsOf(recs); !slices.Equal(got, wantIDs) {
				return fmt.Errorf("us's instances seen from eu: %v, want %v", got, wantIDs)
			}
			for _, rec := range recs {
				if rec.Stale != wantStale {
					return fmt.Errorf("%s: stale %v, want %v", rec.ID, rec.Stale, wantStale)
				}
			}
			return nil
		}
	}
	us := events.InstancesQuery{Service: "echo", Region: "us"}
	bustest.Eventually(t, 30*time.Second, remoteOf(us, false, ids(tr.inUS)))

	tr.l.Cut("us")
	bustest.Eventually(t, 30*time.Second, remoteOf(us, true, ids(tr.inUS)))
	// us serves itself: its node answers, its instance stays passing and
	// a new one registers.
	late := fakeinst.Start(t, tr.us.URL, fakeinst.Options{Service: "echo"})
	recs, err := instances(t, tr.us, events.InstancesQuery{Service: "echo"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := idsOf(recs), ids([]*fakeinst.Instance{tr.inUS[0], late}); !slices.Equal(got, want) {
		t.Fatalf("cut-off us serves %v, want %v", got, want)
	}
	for _, rec := range recs {
		if rec.Status != events.Passing {
			t.Errorf("cut-off us: %s is %s", rec.ID, rec.Status)
		}
	}

	tr.l.Heal("us")
	bustest.Eventually(t, 30*time.Second, remoteOf(us, false, ids([]*fakeinst.Instance{tr.inUS[0], late})))
}

// hail.discover published in one region makes only its own instances
// announce: a discovery node of the other hears no announce from it.
func TestDiscoverStaysHome(t *testing.T) {
	l := regiontest.NewLinked(t, "eu", "us")
	eu, us := l.Region("eu"), l.Region("us")
	inst := fakeinst.Start(t, us.URL, fakeinst.Options{Service: "echo", Manual: true})
	_ = inst
	heard := make(chan string, 8)
	sub, err := us.NC.Subscribe(events.Subjects{}.Discover(), func(m *nats.Msg) { heard <- m.Subject })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := us.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	// hail.inst.> crosses: once it has, the discover sent before it has
	// had its chance.
	probe, err := us.NC.SubscribeSync("hail.inst.probe")
	if err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 20*time.Second, func() error {
		if err := eu.NC.Publish(events.Subjects{}.Discover(), []byte(`{}`)); err != nil {
			return err
		}
		if err := eu.NC.Publish("hail.inst.probe", nil); err != nil {
			return err
		}
		_, err := probe.NextMsg(100 * time.Millisecond)
		return err
	})
	select {
	case s := <-heard:
		t.Fatalf("%s published in eu reached us", s)
	default:
	}
}

func TestRemoteRegionsValidated(t *testing.T) {
	r := regiontest.NewLinked(t, "eu", "us").Region("eu")
	for _, c := range []struct {
		name    string
		regions []string
		want    string
	}{
		{"own", []string{"eu"}, "own region"},
		{"twice", []string{"us", "us"}, "twice"},
		{"bad", []string{"us.east"}, "region"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := discovery.New(r.NC, r.KV, discovery.Config{RemoteRegions: c.regions})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("remote_regions %v: %v, want an error with %q", c.regions, err, c.want)
			}
		})
	}
	if _, err := discovery.New(r.NC, r.KV, discovery.Config{Region: "EU"}); err == nil || !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("region EU: %v, want invalid", err)
	}
}
