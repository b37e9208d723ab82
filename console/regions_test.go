package console_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/console"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/internal/regiontest"
)

func getJSON(url string, v any) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("%s", body)
	}
	return resp.StatusCode, json.Unmarshal(body, v)
}

// The console of a region that knows another (PROTOCOL v1.5) lists both
// regions with their staleness, shows a region column, and answers
// another region's instances with a region filter.
func TestConsoleRegions(t *testing.T) {
	l := regiontest.NewLinked(t, "eu", "us")
	eu, us := l.Region("eu"), l.Region("us")
	eu.StartNode(discovery.Config{RemoteRegions: []string{"us"}})
	us.StartNode(discovery.Config{RemoteRegions: []string{"eu"}})
	fakeinst.Start(t, eu.URL, fakeinst.Options{Service: "echo"})
	remote := fakeinst.Start(t, us.URL, fakeinst.Options{Service: "echo"})
	_, srv := eu.StartConsole(console.RegionConfig{})

	want := []console.RegionView{{Region: "eu", Services: 1, Instances: 1, Passing: 1}, {Region: "us", Services: 1, Instances: 1, Passing: 1}}
	bustest.Eventually(t, 30*time.Second, func() error {
		var got []console.RegionView
		if _, err := getJSON(srv.URL+"/api/regions", &got); err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("regions %+v, want %+v", got, want)
		}
		return nil
	})
	var recs []events.InstanceRecord
	if _, err := getJSON(srv.URL+"/api/instances?service=echo&region=us", &recs); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].ID != remote.ID || recs[0].Region != "us" {
		t.Fatalf("us's echo from eu's console: %+v", recs)
	}
	if code, err := getJSON(srv.URL+"/api/instances?region=ap", &recs); code != http.StatusBadRequest {
		t.Fatalf("an unknown region: %d %v, want 400", code, err)
	}
	resp, err := http.Get(srv.URL + "/?service=echo")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, s := range []string{`data-region="us"`, `<th>region</th>`, `<td>eu</td>`} {
		if !strings.Contains(string(page), s) {
			t.Errorf("page lacks %s", s)
		}
	}
}
