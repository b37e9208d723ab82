package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/nats-io/nats.go/jetstream"
)

// The dev stack's admin API agrees with hail_instances, and a drain made
// through it takes the instance out of routing.
func TestAdminAPIOnDevStack(t *testing.T) {
	d := startDev(t)
	ctx := t.Context()
	var views []struct {
		events.InstanceRecord
		Drained bool `json:"drained"`
	}
	body, err := httpGet(ctx, "http://"+d.http+"/api/instances?service=echo")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(body), &views); err != nil {
		t.Fatal(err)
	}
	if len(views) != len(d.keys) {
		t.Fatalf("api lists %d instances, hail_instances %d", len(views), len(d.keys))
	}
	// Each row is the hail_instances record under its key, field by field
	// (what discovery writes between the two reads is left out: ts and
	// updated_at).
	js, err := jetstream.New(d.nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, "hail_instances")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range views {
		e, err := kv.Get(ctx, v.Key())
		if err != nil {
			t.Errorf("api instance %s: not in hail_instances: %v", v.Key(), err)
			continue
		}
		rec, err := events.DecodeInstanceRecord(e.Value())
		if err != nil {
			t.Fatal(err)
		}
		got, want := v.InstanceRecord, rec
		got.TS, got.UpdatedAt, want.TS, want.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("api instance %s:\n got %+v\nwant %+v", v.Key(), got, want)
		}
	}
	page, err := httpGet(ctx, "http://"+d.http+"/")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range views {
		if !strings.Contains(page, v.ID) {
			t.Errorf("page lacks instance %s", v.ID)
		}
	}

	drained := views[0].ID
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+d.http+"/api/instances/"+drained+"/drain", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json") // the console's guard takes no other write
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("drain: %s", resp.Status)
	}
	// Once the router has the route, 30 requests in a row avoid it.
	bustest.Eventually(t, 10*time.Second, func() error {
		for range 30 {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			m, err := d.nc.RequestWithContext(rctx, "hail.route.echo.say", []byte("hi"))
			cancel()
			if err != nil {
				return err
			}
			if m.Header.Get(events.HeaderInstance) == drained {
				return fmt.Errorf("routed to the drained instance")
			}
		}
		return nil
	})
}
