package consul

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// Any question name reads as one kind, never panics, and what it names
// is lower case and inside the domain it matched.
func FuzzParseName(f *testing.F) {
	for _, s := range []string{"web.service.hail.", "WEB.service.consul", "_web._tcp.service.hail.", "v2.com.example.login.service.hail.",
		"0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a6b.instance.hail.", "hail.", ".", "", "a..service.hail.", `we\.b.service.hail.`,
		"web.service.local.hail.", strings.Repeat("a.", 200) + "service.hail."} {
		f.Add(s)
	}
	domains := []string{"hail.", "consul."}
	f.Fuzz(func(t *testing.T, qname string) {
		n := parseName(qname, domains, "local")
		switch n.kind {
		case nameOutside:
			if n.labels != nil {
				t.Fatalf("outside with labels %v", n.labels)
			}
		case nameService, nameInstance:
			if len(n.labels) == 0 {
				t.Fatalf("%q: no labels", qname)
			}
			for _, l := range n.labels {
				if l == "" || l != strings.ToLower(l) {
					t.Fatalf("%q: label %q", qname, l)
				}
			}
			for _, c := range serviceCandidates(n.labels) {
				if c.service == "" && n.kind == nameService {
					t.Fatalf("%q: empty service candidate", qname)
				}
			}
		}
	})
}

// Any query string is read or refused with errQuery, never a panic, and a
// wait is never beyond MaxWait.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"", "index=5&wait=120000ms&stale", "passing&tag=a&tag=b", "wait=soon", "token=x", "index=-1",
		"dc=local&consistent", "passing=false", "%zz", "wait=1e9h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := parseQuery(raw)
		if err != nil {
			if !strings.Contains(err.Error(), errQuery.Error()) {
				t.Fatalf("%q: error %v is not a bad query", raw, err)
			}
			return
		}
		if q.wait < 0 || q.wait > MaxWait {
			t.Fatalf("%q: wait %v", raw, q.wait)
		}
	})
}

// Any packet is answered within the transport's size, or dropped; never
// a panic.
func FuzzDNSPacket(f *testing.F) {
	for _, name := range []string{"web.service.hail.", "example.com.", "x.instance.hail."} {
		for _, qt := range []uint16{dns.TypeA, dns.TypeSRV, dns.TypeANY} {
			m := new(dns.Msg).SetQuestion(name, qt)
			m.SetEdns0(4096, true)
			b, _ := m.Pack()
			f.Add(b)
		}
	}
	f.Add([]byte{0x12})
	d := NewDNS(NewView("local"), DefaultDNS(), nil)
	sc := newScratch()
	f.Fuzz(func(t *testing.T, pkt []byte) {
		out := d.handle(pkt, true, sc)
		if len(out) > 4096 && len(out) > dns.MinMsgSize {
			t.Fatalf("UDP answer of %d bytes", len(out))
		}
	})
}
