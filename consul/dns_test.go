package consul_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/consul"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/consulenv"
)

// ask sends one question over net (udp or tcp), with an EDNS0 size when
// edns > 0.
func ask(t *testing.T, addr, network, name string, qtype uint16, edns uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg).SetQuestion(name, qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	c := &dns.Client{Net: network, Timeout: 5 * time.Second, UDPSize: 65535}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	return resp
}

// values lists the answer's A/AAAA addresses and SRV targets, sorted.
func values(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		switch r := rr.(type) {
		case *dns.A:
			out = append(out, r.A.String())
		case *dns.AAAA:
			out = append(out, r.AAAA.String())
		case *dns.SRV:
			out = append(out, fmt.Sprintf("%d %d %d %s", r.Priority, r.Weight, r.Port, r.Target))
		}
	}
	slices.Sort(out)
	return out
}

// The DNS interface as a miekg/dns client asks it: A, AAAA, SRV, tags,
// RFC 2782, instances, the alternative domain, dotted names, case, and
// the negative answers.
func TestDNSAnswers(t *testing.T) {
	dc := consul.DefaultDNS()
	dc.AltDomain = "consul."
	dc.TTL = 5 * time.Second
	e := consulenv.Start(t, consulenv.Options{DNS: &dc})
	a := e.Record("web", func(r *events.InstanceRecord) { r.Address, r.Tags, r.Weight = "10.0.0.1", []string{"v2"}, 7 })
	b := e.Record("web", func(r *events.InstanceRecord) { r.Address, r.Status = "fd00::2", events.Warning })
	host := e.Record("web", func(r *events.InstanceRecord) { r.Address, r.Port = "web-3.example.com", 9090 })
	e.Put(a)
	e.Put(b)
	e.Put(host)
	e.Put(e.Record("web", func(r *events.InstanceRecord) { r.Address = "10.0.0.4"; r.Status = events.Critical }))
	e.Put(e.Record("web", func(r *events.InstanceRecord) { r.Address = "10.0.0.5"; r.Weight = 0 }))                          // drained
	e.Put(e.Record("web", func(r *events.InstanceRecord) { r.Address, r.Endpoints = "", []events.Endpoint{{Name: "say"}} })) // NATS-only
	e.Put(e.Record("com.example.login", func(r *events.InstanceRecord) { r.Address = "10.0.1.1" }))
	e.Put(e.Record("login", func(r *events.InstanceRecord) { r.Address = "10.0.2.1"; r.Tags = []string{"beta"} }))
	e.Put(e.Record("down", func(r *events.InstanceRecord) { r.Address = "10.0.3.1"; r.Status = events.Critical }))
	srvA := fmt.Sprintf("1 7 8080 %s.instance.hail.", a.ID)
	srvB := fmt.Sprintf("1 100 8080 %s.instance.hail.", b.ID)
	srvHost := "1 100 9090 web-3.example.com."

	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
		want  []string
	}{
		{"web.service.hail.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.0.1"}},
		{"WEB.Service.HAIL.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.0.1"}},
		{"web.service.hail.", dns.TypeAAAA, dns.RcodeSuccess, []string{"fd00::2"}},
		{"web.service.hail.", dns.TypeANY, dns.RcodeSuccess, []string{"10.0.0.1", "fd00::2"}},
		{"web.service.hail.", dns.TypeSRV, dns.RcodeSuccess, []string{srvA, srvB, srvHost}},
		{"_web._tcp.service.hail.", dns.TypeSRV, dns.RcodeSuccess, []string{srvA, srvB, srvHost}},
		{"v2.web.service.hail.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.0.1"}},
		{"_web._v2.service.hail.", dns.TypeSRV, dns.RcodeSuccess, []string{srvA}},
		{"web.service.consul.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.0.1"}},
		{"web.service.local.hail.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.0.1"}},
		{a.ID + ".instance.hail.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.0.1"}},
		{"com.example.login.service.hail.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.1.1"}},
		{"beta.login.service.hail.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.2.1"}},
		{"web.service.hail.", dns.TypeTXT, dns.RcodeSuccess, nil},
		{"down.service.hail.", dns.TypeA, dns.RcodeSuccess, nil},
		{"v9.web.service.hail.", dns.TypeA, dns.RcodeSuccess, nil},
		{"nope.service.hail.", dns.TypeA, dns.RcodeNameError, nil},
		{"x.y.nope.service.hail.", dns.TypeA, dns.RcodeNameError, nil},
		{"00000000-0000-4000-8000-000000000000.instance.hail.", dns.TypeA, dns.RcodeNameError, nil},
		{"web.node.hail.", dns.TypeA, dns.RcodeNameError, nil},
		{"service.hail.", dns.TypeA, dns.RcodeNameError, nil},
		{"hail.", dns.TypeA, dns.RcodeSuccess, nil},
		{"example.com.", dns.TypeA, dns.RcodeRefused, nil},
		{"web.service.hail.example.com.", dns.TypeA, dns.RcodeRefused, nil},
		{".", dns.TypeNS, dns.RcodeRefused, nil},
	} {
		t.Run(tc.name+" "+dns.TypeToString[tc.qtype], func(t *testing.T) {
			resp := ask(t, e.DNSAddr, "udp", tc.name, tc.qtype, 0)
			if resp.Rcode != tc.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.rcode])
			}
			if got, want := values(resp.Answer), slices.Sorted(slices.Values(tc.want)); !slices.Equal(got, want) {
				t.Errorf("answer %v, want %v", got, want)
			}
			if tc.rcode != dns.RcodeRefused && len(tc.want) == 0 {
				soa, ok := soaOf(resp)
				if !ok || soa.Minttl != 1 {
					t.Errorf("negative answer without an SOA of minimum TTL 1: %v", resp.Ns)
				}
			}
			for _, rr := range resp.Answer {
				if rr.Header().Ttl != 5 {
					t.Errorf("TTL %d, want dns.ttl 5", rr.Header().Ttl)
				}
			}
		})
	}
	// SRV's targets come with their addresses.
	resp := ask(t, e.DNSAddr, "udp", "web.service.hail.", dns.TypeSRV, 0)
	if got, want := values(resp.Extra), []string{"10.0.0.1", "fd00::2"}; !slices.Equal(got, want) {
		t.Errorf("SRV additional %v, want %v", got, want)
	}
	if resp := ask(t, e.DNSAddr, "udp", "web.service.consul.", dns.TypeSRV, 0); !slices.Contains(values(resp.Answer), fmt.Sprintf("1 7 8080 %s.instance.consul.", a.ID)) {
		t.Errorf("SRV under the alt domain: %v", values(resp.Answer))
	}
}

func soaOf(m *dns.Msg) (*dns.SOA, bool) {
	for _, rr := range m.Ns {
		if s, ok := rr.(*dns.SOA); ok {
			return s, true
		}
	}
	return nil, false
}

// dns.only_passing leaves instances in warning out.
func TestDNSOnlyPassing(t *testing.T) {
	dc := consul.DefaultDNS()
	dc.OnlyPassing = true
	e := consulenv.Start(t, consulenv.Options{DNS: &dc})
	e.Put(e.Record("web", func(r *events.InstanceRecord) { r.Address = "10.0.0.1" }))
	e.Put(e.Record("web", func(r *events.InstanceRecord) { r.Address = "10.0.0.2"; r.Status = events.Warning }))
	if got := values(ask(t, e.DNSAddr, "udp", "web.service.hail.", dns.TypeA, 0).Answer); !slices.Equal(got, []string{"10.0.0.1"}) {
		t.Errorf("only passing: %v", got)
	}
}

// 300 instances: over UDP the answer is cut to whole records with TC set
// (512 bytes, or the client's EDNS0 size); over TCP every one is there.
func TestDNSLargeAnswers(t *testing.T) {
	e := consulenv.Start(t, consulenv.Options{})
	const n = 300
	for i := range n {
		e.Put(e.Record("big", func(r *events.InstanceRecord) { r.Address = fmt.Sprintf("10.1.%d.%d", i/200, i%200+1) }))
	}
	for _, tc := range []struct {
		name    string
		network string
		edns    uint16
		qtype   uint16
		whole   bool
	}{
		{"udp 512", "udp", 0, dns.TypeA, false},
		{"udp edns 1232", "udp", 1232, dns.TypeA, false},
		{"udp srv", "udp", 0, dns.TypeSRV, false},
		{"tcp", "tcp", 0, dns.TypeA, true},
		{"tcp srv", "tcp", 0, dns.TypeSRV, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := ask(t, e.DNSAddr, tc.network, "big.service.hail.", tc.qtype, tc.edns)
			resp.Compress = true // as it came
			packed, err := resp.Pack()
			if err != nil {
				t.Fatal(err)
			}
			if tc.whole {
				if len(resp.Answer) != n || resp.Truncated {
					t.Errorf("%d answers (TC %v), want all %d", len(resp.Answer), resp.Truncated, n)
				}
				return
			}
			limit := 512
			if tc.edns > 0 {
				limit = int(tc.edns)
			}
			if !resp.Truncated || len(resp.Answer) == 0 || len(resp.Answer) >= n || len(packed) > limit {
				t.Errorf("TC %v, %d answers in %d bytes; want TC, some whole records within %d bytes", resp.Truncated, len(resp.Answer), len(packed), limit)
			}
		})
	}
}

// A UDP answer cut to 512 bytes holds as many distinct instances as fit,
// drawn at random: over many answers every instance is sent, and the
// first record changes.
func TestDNSCutAnswersShuffled(t *testing.T) {
	e := consulenv.Start(t, consulenv.Options{})
	const n = 300
	var recs []events.InstanceRecord
	for i := range n {
		recs = append(recs, e.Record("big", func(r *events.InstanceRecord) { r.Address = fmt.Sprintf("10.1.%d.%d", i/200, i%200+1) }))
	}
	e.PutAll(recs)
	sent := map[string]bool{}
	firsts := map[string]bool{}
	for range 200 {
		resp := ask(t, e.DNSAddr, "udp", "big.service.hail.", dns.TypeA, 0)
		resp.Compress = true
		packed, err := resp.Pack()
		if err != nil {
			t.Fatal(err)
		}
		if !resp.Truncated || len(packed) > 512 || len(packed)+16 <= 512 {
			t.Fatalf("TC %v, %d records in %d bytes: want TC and as many 16-byte records as fit 512", resp.Truncated, len(resp.Answer), len(packed))
		}
		got := values(resp.Answer)
		for i, v := range got {
			if i > 0 && got[i-1] == v {
				t.Fatalf("%s twice in one answer", v)
			}
			sent[v] = true
		}
		firsts[resp.Answer[0].(*dns.A).A.String()] = true
	}
	if len(sent) != n {
		t.Errorf("%d of %d instances sent over 200 answers", len(sent), n)
	}
	if len(firsts) < 20 {
		t.Errorf("only %d different first records over 200 answers", len(firsts))
	}
}

// Go's resolver, dialed to the test server, finds the addresses and the
// RFC 2782 SRV records.
func TestDNSWithNetResolver(t *testing.T) {
	e := consulenv.Start(t, consulenv.Options{})
	a := e.Record("web", func(r *events.InstanceRecord) { r.Address = "10.0.0.1" })
	e.Put(a)
	e.Put(e.Record("web", func(r *events.InstanceRecord) { r.Address = "10.0.0.2"; r.Port = 9090 }))
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, e.DNSAddr)
	}}
	addrs, err := res.LookupHost(t.Context(), "web.service.hail")
	slices.Sort(addrs)
	if err != nil || !slices.Equal(addrs, []string{"10.0.0.1", "10.0.0.2"}) {
		t.Errorf("LookupHost: %v %v", addrs, err)
	}
	_, srvs, err := res.LookupSRV(t.Context(), "web", "tcp", "service.hail")
	if err != nil || len(srvs) != 2 {
		t.Fatalf("LookupSRV: %v %v", srvs, err)
	}
	if _, err := res.LookupHost(t.Context(), "nope.service.hail"); !isNotFound(err) {
		t.Errorf("unknown service: %v, want not found", err)
	}
}

func isNotFound(err error) bool {
	var de *net.DNSError
	return err != nil && errors.As(err, &de) && de.IsNotFound
}

// Packets that do not parse are dropped, unanswered, and counted; the
// server goes on answering.
func TestDNSMalformed(t *testing.T) {
	e := consulenv.Start(t, consulenv.Options{})
	e.Put(e.Record("web", func(r *events.InstanceRecord) { r.Address = "10.0.0.1" }))
	good, _ := new(dns.Msg).SetQuestion("web.service.hail.", dns.TypeA).Pack()
	reply, _ := new(dns.Msg).SetReply(new(dns.Msg).SetQuestion("web.service.hail.", dns.TypeA)).Pack()
	bad := [][]byte{
		{},
		{0x12},
		good[:len(good)-3],
		append(append([]byte{}, good[:12]...), 0xff, 0xff, 0xff),
		reply,
		[]byte(strings.Repeat("\xff", 600)),
	}
	conn, err := net.Dial("udp", e.DNSAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, p := range bad {
		if _, err := conn.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	// A good question after them is answered: the bad ones had their turn.
	if _, err := conn.Write(good); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	var m dns.Msg
	if err := m.Unpack(buf[:n]); err != nil || len(m.Answer) != 1 {
		t.Fatalf("the first reply is not the good question's: %v %v", &m, err)
	}
	// Readers work in parallel: the last bad packet may be counted after
	// the good one is answered.
	bustest.Eventually(t, 10*time.Second, func() error {
		if got := e.DNS.Malformed(); got != uint64(len(bad)) {
			return fmt.Errorf("%d malformed counted, want %d", got, len(bad))
		}
		return nil
	})
}

// dig, as an operator runs it: A, SRV, a tag, the alt domain, NXDOMAIN,
// REFUSED, TC over UDP and 300 instances over TCP.
func TestDNSWithDig(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("dig is not installed (Debian's dnsutils); .ci/run installs it")
		}
		t.Skip("dig is not installed (apt-get install dnsutils)")
	}
	dc := consul.DefaultDNS()
	dc.AltDomain = "consul."
	e := consulenv.Start(t, consulenv.Options{DNS: &dc})
	e.Put(e.Record("web", func(r *events.InstanceRecord) { r.Address = "10.0.0.1"; r.Tags = []string{"v2"} }))
	for i := range 300 {
		e.Put(e.Record("big", func(r *events.InstanceRecord) { r.Address = fmt.Sprintf("10.2.%d.%d", i/200, i%200+1) }))
	}
	host, port, _ := net.SplitHostPort(e.DNSAddr)
	run := func(args ...string) string {
		out, err := exec.CommandContext(t.Context(), dig, append([]string{"@" + host, "-p", port, "+tries=1", "+time=5"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"+short", "web.service.hail"}, []string{"10.0.0.1"}},
		{[]string{"+short", "web.service.consul"}, []string{"10.0.0.1"}},
		{[]string{"+short", "v2.web.service.hail"}, []string{"10.0.0.1"}},
		{[]string{"+short", "_web._tcp.service.hail", "SRV"}, []string{"1 100 8080 ", ".instance.hail."}},
		{[]string{"nope.service.hail"}, []string{"status: NXDOMAIN", "SOA"}},
		{[]string{"example.com"}, []string{"status: REFUSED"}},
		{[]string{"+notcp", "+noedns", "+ignore", "big.service.hail"}, []string{"flags: qr aa tc"}},
		{[]string{"+tcp", "+short", "big.service.hail"}, []string{"10.2.1.100"}},
	} {
		out := run(tc.args...)
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("dig %v: no %q in\n%s", tc.args, w, out)
			}
		}
	}
	if got := strings.Count(strings.TrimSpace(run("+tcp", "+short", "big.service.hail")), "\n") + 1; got != 300 {
		t.Errorf("dig +tcp: %d addresses, want 300", got)
	}
}
