package e2e

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hailsd/hail/events"
)

// natsClaim checks what a README nats line's comment says it prints or
// does; out is what the CLI printed (headers and body).
type natsClaim func(t *testing.T, d *devStack, out string) error

// claimSection is the README section in which every commented nats line
// must have its comment checked here (or show JSON, compared as a golden).
const claimSection = "Try it with the nats CLI"

// natsClaims are the checks of the README's nats lines whose comments
// describe rather than show the output, by the line as written (<id> and
// all).
var natsClaims = map[string]natsClaim{
	"nats kv ls hail_instances": func(_ *testing.T, d *devStack, out string) error {
		return sameSet(strings.Fields(out), append(slices.Clone(d.keys), d.greeter))
	},
	"nats kv get hail_instances echo.<id> --raw": func(_ *testing.T, d *devStack, out string) error {
		// The whole record: without --raw the CLI shows 120 bytes.
		var r events.InstanceRecord
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			return fmt.Errorf("not one InstanceRecord: %w:\n%s", err, out)
		}
		if r.Key() != d.keys[0] {
			return fmt.Errorf("record of %s, want %s", r.Key(), d.keys[0])
		}
		return nil
	},
	"nats kv watch hail_instances": func(_ *testing.T, d *devStack, out string) error {
		return contains(out, append(slices.Clone(d.keys), d.greeter)...)
	},
	"nats kv ls hail_nodes": func(t *testing.T, d *devStack, out string) error {
		nodes, err := d.nodes(t)
		if err != nil {
			return err
		}
		return sameSet(strings.Fields(out), nodes)
	},
	"nats request hail.route.echo.say hi": func(_ *testing.T, d *devStack, out string) error {
		return answeredByEcho(d, out)
	},
	`nats kv put hail_config route.echo '{"strategy":"round_robin"}'`: func(t *testing.T, d *devStack, _ string) error {
		// Strict rotation: three requests in a row reach all three.
		seen := map[string]bool{}
		for range 3 {
			seen[instanceOf(d.mustCLI(t, "request", "hail.route.echo.say", "hi"))] = true
		}
		if len(seen) != 3 {
			return fmt.Errorf("round_robin not in force: 3 requests reached %d instances", len(seen))
		}
		return nil
	},
	"nats kv get hail_config route.echo": func(_ *testing.T, _ *devStack, out string) error {
		return contains(out, `{"strategy":"round_robin"}`)
	},
	`nats kv put hail_config route.echo '{"strategy":"hash"}'`: func(_ *testing.T, _ *devStack, out string) error {
		return contains(out, `{"strategy":"hash"}`)
	},
	"nats request -H Hail-Key:user-42 hail.route.echo.say hi": func(t *testing.T, d *devStack, out string) error {
		first := instanceOf(out)
		for range 5 {
			if got := instanceOf(d.mustCLI(t, "request", "-H", "Hail-Key:user-42", "hail.route.echo.say", "hi")); got != first {
				return fmt.Errorf("one key reached %s and %s", first, got)
			}
		}
		return answeredByEcho(d, out)
	},
	"nats kv del -f hail_config route.echo": func(t *testing.T, d *devStack, _ string) error {
		if out, err := d.cli(t, "kv", "get", "hail_config", "route.echo"); err == nil || !strings.Contains(out, "key not found") {
			return fmt.Errorf("route.echo still there: %v %s", err, out)
		}
		return nil
	},
	"nats request hail.route.nosuch.say hi": func(_ *testing.T, _ *devStack, out string) error {
		h, _ := natsReply(out)
		if h[events.HeaderServiceErrorCode] != "404" || h[events.HeaderServiceError] != `no service "nosuch" is registered` {
			return fmt.Errorf("headers %v, want 404 no service \"nosuch\" is registered", h)
		}
		return nil
	},
	"nats request hail.svc.echo.say hi": func(_ *testing.T, d *devStack, out string) error {
		return answeredByEcho(d, out)
	},
	`nats request hail.discovery.instances '{"service":"echo"}'`: func(_ *testing.T, d *devStack, out string) error {
		recs, err := records(out)
		if err != nil {
			return err
		}
		var keys []string
		for _, r := range recs {
			keys = append(keys, r.Key())
		}
		return sameSet(keys, d.keys)
	},
	`nats request hail.discovery.instances '{"service_prefix":"ec","status":"passing","az":"dev-a"}'`: func(_ *testing.T, _ *devStack, out string) error {
		recs, err := records(out)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			return fmt.Errorf("no echo instance in az dev-a (the dev stack spreads them over dev-a, dev-b, dev-c)")
		}
		for _, r := range recs {
			if r.Service != "echo" || r.AZ != "dev-a" {
				return fmt.Errorf("%s in %s answered", r.Key(), r.AZ)
			}
		}
		return nil
	},
	`nats request hail.discovery.instances '{"limit":2}'`: func(_ *testing.T, d *devStack, out string) error {
		recs, err := records(out)
		if err != nil {
			return err
		}
		all := append(slices.Clone(d.keys), d.greeter)
		slices.Sort(all)
		if len(recs) != 2 || recs[0].Key() != all[0] || recs[1].Key() != all[1] {
			return fmt.Errorf("page %v, want the first two keys of %v", keysOf(recs), all)
		}
		return nil
	},
	`nats request hail.discovery.instances '{"limit":2,"after":"echo.<id>"}'`: func(t *testing.T, d *devStack, out string) error {
		recs, err := records(out)
		if err != nil {
			return err
		}
		after := d.keys[0] // what <id> stands for in these lines
		all := append(slices.Clone(d.keys), d.greeter)
		slices.Sort(all)
		var want []string
		for _, k := range all {
			if k > after && len(want) < 2 {
				want = append(want, k)
			}
		}
		if got := keysOf(recs); !slices.Equal(got, want) {
			return fmt.Errorf("page after %s: %v, want %v", after, got, want)
		}
		// A bare id is no key: refused, not answered from the top.
		bare, _ := d.cli(t, "request", "hail.discovery.instances", fmt.Sprintf(`{"limit":2,"after":%q}`, strings.TrimPrefix(after, "echo.")))
		if h, _ := natsReply(bare); h[events.HeaderServiceErrorCode] != "400" {
			return fmt.Errorf("a bare id as after: %s, want a 400", bare)
		}
		return nil
	},
	"nats micro ls": func(_ *testing.T, _ *devStack, out string) error {
		if err := contains(out, "hail-discovery", "hail-router", "echo"); err != nil {
			return err
		}
		// One row per micro instance: the node, the router, 3 echoes.
		if n := len(microID.FindAllString(out, -1)); n != 5 {
			return fmt.Errorf("micro ls lists %d instances, want 5:\n%s", n, out)
		}
		return nil
	},
	"nats micro info echo": func(_ *testing.T, _ *devStack, out string) error {
		return contains(out, "hail.svc.echo.say", "Queue Group: hail.echo", "hail.inst.", ".say")
	},
	"nats micro stats echo": func(_ *testing.T, _ *devStack, out string) error {
		return contains(out, "echo Service Statistics", "say", "hail.echo")
	},
	"nats sub 'hail.health.>'": func(_ *testing.T, _ *devStack, out string) error {
		return contains(out, "hail.health.>")
	},
	"nats sub --stream HAIL_EVENTS --all": func(_ *testing.T, d *devStack, out string) error {
		// The registrations, replayed.
		var want []string
		for _, k := range append(slices.Clone(d.keys), d.greeter) {
			want = append(want, "hail.health."+k)
		}
		return contains(out, append(want, `"status":"passing"`, `"reason":"registered"`)...)
	},
	`nats request hail.announce.echo '{"id":"nope"}'`: func(_ *testing.T, _ *devStack, out string) error {
		h, body := natsReply(out)
		if h[events.HeaderServiceErrorCode] != "400" || !strings.Contains(body, "service is required") {
			return fmt.Errorf("%v %s, want a 400 saying the service is required", h, body)
		}
		return nil
	},
	"nats kv get hail_instances greeter.<id> --raw": func(_ *testing.T, d *devStack, out string) error {
		return contains(out, `"id":"`+strings.TrimPrefix(d.greeter, "greeter.")+`"`, `"address":"127.0.0.1"`, `"port":`, `"tags":[`, `"checks":[{"name":"health"`)
	},
	"nats request hail.svc.greeter.hello ''": func(_ *testing.T, _ *devStack, out string) error {
		if _, body := natsReply(out); body != "hello, world, from greeter" {
			return fmt.Errorf("%q, want greeter's hello", body)
		}
		return nil
	},
}

// checkNatsClaim checks a README line's comment against what it printed.
func checkNatsClaim(t *testing.T, d *devStack, l readmeLine, out string) error {
	if literalOutput(l.comment) {
		_, body := natsReply(out)
		return matchGolden(l.comment, body)
	}
	if c := natsClaims[strings.Join(strings.Fields(l.cmd), " ")]; c != nil {
		return c(t, d, out)
	}
	if l.section == claimSection && l.comment != "" {
		return fmt.Errorf("no check of the README's comment %q: add one to natsClaims", l.comment)
	}
	return nil
}

var microID = regexp.MustCompile(`│ [A-Za-z0-9]{22} │`)

// nodes are the keys of hail_nodes.
func (d *devStack) nodes(t *testing.T) ([]string, error) {
	js, err := jetstream.New(d.nc)
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(t.Context(), "hail_nodes")
	if err != nil {
		return nil, err
	}
	return kv.Keys(t.Context())
}

func answeredByEcho(d *devStack, out string) error {
	h, body := natsReply(out)
	if body != "hi" || !slices.Contains(d.keys, "echo."+h[events.HeaderInstance]) {
		return fmt.Errorf("answer %q from %q, want hi from an echo instance", body, h[events.HeaderInstance])
	}
	return nil
}

func records(out string) ([]events.InstanceRecord, error) {
	_, body := natsReply(out)
	var recs []events.InstanceRecord
	if err := json.Unmarshal([]byte(body), &recs); err != nil {
		return nil, fmt.Errorf("%w: %s", err, body)
	}
	return recs, nil
}

func keysOf(recs []events.InstanceRecord) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Key()
	}
	return out
}

func sameSet(got, want []string) error {
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		return fmt.Errorf("%v, want %v", g, w)
	}
	return nil
}

func contains(out string, wants ...string) error {
	for _, w := range wants {
		if !strings.Contains(out, w) {
			return fmt.Errorf("lacks %q:\n%s", w, out)
		}
	}
	return nil
}
