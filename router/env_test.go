package router_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/internal/regiontest"
	"github.com/hailsd/hail/router"
)

var subjects events.Subjects

// env is a region (regiontest) with a discovery node and a router, each on
// its own connection, and a caller's connection.
type env struct {
	*regiontest.Region
	router  *router.Router
	metrics *metrics.Set
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, router.TableConfig{})
}

// newEnvWith is newEnv with the router's table configured (Metrics is the
// env's).
func newEnvWith(t *testing.T, tc router.TableConfig) *env {
	t.Helper()
	e := &env{Region: regiontest.New(t), metrics: metrics.NewSet()}
	e.StartNode(discovery.Config{})
	tc.Metrics = e.metrics
	e.router = e.StartRouter(router.Config{Table: tc})
	return e
}

// owner is the node the registry names as the instance's owner.
func (e *env) owner(service, id string) string {
	e.T.Helper()
	entry, err := e.KV.Instances.Get(e.T.Context(), events.InstanceKey(service, id))
	if err != nil {
		e.T.Fatal(err)
	}
	var rec events.InstanceRecord
	if err := json.Unmarshal(entry.Value(), &rec); err != nil {
		e.T.Fatal(err)
	}
	return rec.Node
}

func (e *env) instance(o fakeinst.Options) *fakeinst.Instance {
	e.T.Helper()
	if o.Service == "" {
		o.Service = "echo"
	}
	return fakeinst.Start(e.T, e.URL, o)
}

// routable waits until the router offers n instances of service for say.
func (e *env) routable(service string, n int) {
	e.T.Helper()
	bustest.Eventually(e.T, 10*time.Second, func() error {
		got := map[string]bool{}
		for range 20 * n {
			m, err := e.NC.Request(subjects.Route(service, "say"), nil, 2*time.Second)
			if err != nil {
				return err
			}
			if code, text, isErr := events.ReplyError(m); isErr {
				return fmt.Errorf("%d %s", code, text)
			}
			got[string(m.Data)] = true
		}
		if len(got) != n {
			return fmt.Errorf("%d instances answered, want %d", len(got), n)
		}
		return nil
	})
}

// load sends requests from workers goroutines until stop is closed, and
// counts replies by answering instance and errors by code.
type load struct {
	mu     sync.Mutex
	by     map[string]int
	errors map[string]int
	total  int
	wg     sync.WaitGroup
	stop   chan struct{}
}

func (e *env) load(workers int, subject string, header nats.Header, timeout time.Duration) *load {
	return e.loadMsg(workers, &nats.Msg{Subject: subject, Header: header}, timeout)
}

func (e *env) loadMsg(workers int, req *nats.Msg, timeout time.Duration) *load {
	l := &load{by: map[string]int{}, errors: map[string]int{}, stop: make(chan struct{})}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				m, err := e.NC.RequestMsg(&nats.Msg{Subject: req.Subject, Header: req.Header, Data: req.Data}, timeout)
				l.mu.Lock()
				l.total++
				switch {
				case err != nil:
					l.errors[err.Error()]++
				default:
					if code, text, isErr := events.ReplyError(m); isErr {
						l.errors[fmt.Sprintf("%d %s", code, text)]++
					} else {
						l.by[string(m.Data)]++
					}
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) finish() {
	close(l.stop)
	l.wg.Wait()
}

func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

func (l *load) errorList() string {
	var b strings.Builder
	for k, v := range l.errors {
		fmt.Fprintf(&b, "%dx %s; ", v, k)
	}
	return b.String()
}

func (e *env) putRoute(service, value string) {
	e.T.Helper()
	if _, err := e.KV.Config.Put(e.T.Context(), events.RouteConfigKey(service), []byte(value)); err != nil {
		e.T.Fatal(err)
	}
}

func (e *env) counter(name string) float64 {
	var b strings.Builder
	e.metrics.WritePrometheus(&b)
	for line := range strings.Lines(b.String()) {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			var v float64
			fmt.Sscan(rest, &v)
			return v
		}
	}
	return 0
}
