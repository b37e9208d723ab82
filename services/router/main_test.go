package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/internal/proctest"
	"github.com/hailsd/hail/internal/testlog"
)

func envFrom(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// The program as the hidden tests start it: HAIL_NATS_URL only. It starts
// before any discovery node has made the buckets, and waits for them.
func TestRunRoutesThroughEnv(t *testing.T) {
	s := bustest.RunServer(t)
	nc := bustest.Connect(t, s.ClientURL())
	addr := fmt.Sprintf("127.0.0.1:%d", bustest.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out testlog.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--http-addr", addr}, envFrom(map[string]string{"HAIL_NATS_URL": s.ClientURL()}), &out)
	}()
	bustest.Eventually(t, 5*time.Second, func() error {
		if !strings.Contains(out.String(), "waiting for the registry buckets") {
			return fmt.Errorf("router does not say it waits:\n%s", out.String())
		}
		return nil
	})

	node, err := discovery.New(bustest.Connect(t, s.ClientURL()), bustest.Buckets(t, nc), discovery.Config{})
	if err != nil {
		t.Fatal(err)
	}
	nodeCtx, stopNode := context.WithCancel(context.Background())
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- node.Run(nodeCtx) }()
	defer func() {
		stopNode()
		<-nodeDone
	}()
	select {
	case <-node.Serving():
	case <-time.After(10 * time.Second):
		t.Fatal("discovery not serving within 10s")
	}
	inst := fakeinst.Start(t, s.ClientURL(), fakeinst.Options{Service: "echo"})

	bustest.Eventually(t, 10*time.Second, func() error {
		m, err := nc.Request("hail.route.echo.say", []byte("hi"), time.Second)
		if err != nil {
			return err
		}
		if code, text, isErr := events.ReplyError(m); isErr {
			return fmt.Errorf("%d %s", code, text)
		}
		if string(m.Data) != inst.ID {
			return fmt.Errorf("reply %q", m.Data)
		}
		return nil
	})
	// The loop above may have met a 404 before the router knew echo, so
	// the unknown-service count is compared with its value before the
	// request, not with 1.
	const unknown = `hail_router_requests_total{service="_unknown",endpoint="_unknown",outcome="not_found"}`
	before := metricValue(t, scrape(t, addr), unknown)
	m, err := nc.Request("hail.route.nosuch.say", nil, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code, _, _ := events.ReplyError(m); code != events.CodeNotFound {
		t.Fatalf("unknown service: code %d, want 404", code)
	}
	body := scrape(t, addr)
	if got := metricValue(t, body, unknown); got != before+1 {
		t.Errorf("%s = %v after one unknown service, want %v", unknown, got, before+1)
	}
	for _, want := range []string{
		`hail_router_requests_total{service="echo",endpoint="say",outcome="ok"}`,
		`hail_router_request_duration_seconds_bucket{service="echo"`,
		"process_cpu_seconds_total",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v\n%s", err, out.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	for _, want := range []string{"router serving", "router stopped"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, out.String())
		}
	}
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// metricValue is the value of the series named exactly, 0 when absent.
func metricValue(t *testing.T, body, series string) float64 {
	t.Helper()
	for line := range strings.Lines(body) {
		rest, ok := strings.CutPrefix(line, series+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			t.Fatalf("metric %s: %v", series, err)
		}
		return v
	}
	return 0
}

func TestConfigErrorsNameField(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--route-strategy", "fastest"}, nil, "route.strategy"},
		{nil, map[string]string{"HAIL_ROUTE_TIMEOUT": "soon"}, "route.timeout"},
		{[]string{"--route-hash-load-factor", "1"}, nil, "route.hash_load_factor"},
		{[]string{"--ejection-max-share", "2"}, nil, "ejection.max_share"},
		{[]string{"--prefix", "hail.>"}, nil, "prefix"},
		{[]string{"--route-retries", "-1"}, nil, "route.retries"},
		{[]string{"--remote-regions", "eu,US"}, nil, "remote_regions"},
		{nil, map[string]string{"HAIL_REMOTE_REGIONS": "eu,eu.west"}, "remote_regions"},
		{nil, map[string]string{"HAIL_REMOTE_REGIONS": "eu,eu"}, "remote_regions"},
		{[]string{"--remote-stale", "0s"}, nil, "remote_stale"},
		{[]string{"--az", strings.Repeat("a", 200)}, nil, "az"},
	}
	for _, tt := range tests {
		err := run(context.Background(), tt.args, envFrom(tt.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run(%v, %v) = %v, want an error naming %s", tt.args, tt.env, err, tt.want)
		}
	}
}

func TestPrintConfig(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--print-config", "--route-strategy", "p2c_ewma", "--az", "eu-west-1a"},
		envFrom(map[string]string{"HAIL_ROUTE_RETRIES": "3", "HAIL_REMOTE_REGIONS": "us,ap"}), &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"strategy: p2c_ewma", "retries: 3", "timeout: 5s", "hash_load_factor: 1.25",
		"az: eu-west-1a", "remote_regions:\n    - us\n    - ap", "remote_stale: 10s"} {
		want = strings.ReplaceAll(want, "\\n", "\n")
		if !strings.Contains(out.String(), want) {
			t.Errorf("printed config lacks %q:\n%s", want, out.String())
		}
	}
}

// An edit of the route defaults in the config file reaches the running
// router's table; a key it cannot take up live is named as needing a
// restart; a broken edit is refused naming the key.
func TestConfigFileRouteDefaultsEdit(t *testing.T) {
	s := bustest.RunServer(t)
	bustest.Buckets(t, bustest.Connect(t, s.ClientURL()))
	path := filepath.Join(t.TempDir(), "router.yaml")
	bustest.ReplaceFile(t, path, "route:\n  strategy: weighted\n")
	var out testlog.Buffer
	proctest.Go(t, func(ctx context.Context) error {
		return run(ctx, []string{"--config", path}, envFrom(map[string]string{"HAIL_NATS_URL": s.ClientURL()}), &out)
	})
	waitLog := func(what string) string {
		t.Helper()
		var found string
		bustest.Eventually(t, 10*time.Second, func() error {
			var ok bool
			if found, ok = out.Line(what); !ok {
				return fmt.Errorf("no log line with %q:\n%s", what, out.String())
			}
			return nil
		})
		return found
	}
	waitLog("router serving")

	bustest.ReplaceFile(t, path, "route:\n  strategy: round_robin\n  timeout: 2s\n  retry_budget: 0.5\n")
	if line := waitLog("route defaults changed"); !strings.Contains(line, "strategy=round_robin") || !strings.Contains(line, "timeout=2s") {
		t.Errorf("table took up %s", line)
	}
	if line := waitLog("only after a restart"); !strings.Contains(line, "keys=route.retry_budget") {
		t.Errorf("restart warning %s", line)
	}

	bustest.ReplaceFile(t, path, "route:\n  strategy: fastest\n")
	if line := waitLog("config file edit refused"); !strings.Contains(line, "route.strategy") {
		t.Errorf("refusal does not name route.strategy: %s", line)
	}
}

// The program with HAIL_REMOTE_REGIONS routes a service with no instance
// at home to another region's instance (in hail_remote), and with
// HAIL_AZ keeps to its zone; its replies name it in Hail-Router.
func TestRunRoutesAbroadAndByZone(t *testing.T) {
	s := bustest.RunServer(t)
	nc := bustest.Connect(t, s.ClientURL())
	kv := bustest.Buckets(t, nc)
	regions := bustest.RemoteBucket(t, nc, "eu")
	node, err := discovery.New(bustest.Connect(t, s.ClientURL()), kv, discovery.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nodeDone, done := make(chan error, 1), make(chan error, 1)
	go func() { nodeDone <- node.Run(ctx) }()
	defer func() { cancel(); <-nodeDone }()
	select {
	case <-node.Serving():
	case <-time.After(10 * time.Second):
		t.Fatal("discovery not serving within 10s")
	}
	var out testlog.Buffer
	go func() {
		done <- run(ctx, nil, envFrom(map[string]string{"HAIL_NATS_URL": s.ClientURL(), "HAIL_REMOTE_REGIONS": "eu", "HAIL_AZ": "a"}), &out)
	}()
	defer func() { cancel(); <-done }()

	far := fakeinst.Start(t, s.ClientURL(), fakeinst.Options{Service: "far", Manual: true})
	a, err := events.DecodeAnnounce(far.AnnounceData())
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := json.Marshal(events.InstanceRecord{Announce: a, Status: events.Passing, Node: uuid.NewString()})
	if _, err := regions["eu"].Put(t.Context(), a.Service+"."+a.ID, rec); err != nil {
		t.Fatal(err)
	}
	zoned := map[string]string{}
	for _, az := range []string{"a", "b"} {
		i := fakeinst.Start(t, s.ClientURL(), fakeinst.Options{Service: "near", Edit: func(a *events.Announce) { a.AZ = az }})
		zoned[i.ID] = az
	}
	ask := func(service string) (*nats.Msg, error) {
		m, err := nc.Request("hail.route."+service+".say", nil, time.Second)
		if err != nil {
			return nil, err
		}
		if code, text, isErr := events.ReplyError(m); isErr {
			return nil, fmt.Errorf("%d %s", code, text)
		}
		if m.Header.Get(events.HeaderRouter) == "" {
			return nil, fmt.Errorf("reply without %s", events.HeaderRouter)
		}
		return m, nil
	}
	bustest.Eventually(t, 15*time.Second, func() error {
		m, err := ask("far")
		if err != nil {
			return err
		}
		if string(m.Data) != far.ID {
			return fmt.Errorf("far answered by %s", m.Data)
		}
		for range 20 {
			m, err := ask("near")
			if err != nil {
				return err
			}
			if zoned[string(m.Data)] != "a" {
				return fmt.Errorf("near answered in zone %q", zoned[string(m.Data)])
			}
		}
		return nil
	})
}
