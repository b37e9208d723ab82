package consul

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/miekg/dns"

	"github.com/hailsd/hail/config"
)

// DNSConfig is the dns section (PROTOCOL v1.3 "DNS").
type DNSConfig struct {
	// Addr is where DNS is served, UDP and TCP. Default 127.0.0.1:8600;
	// empty: off.
	Addr string `koanf:"addr"`
	// Domain names are answered under. Default hail.
	Domain string `koanf:"domain"`
	// AltDomain is a second domain answered alike, e.g. consul. Default
	// none.
	AltDomain string `koanf:"alt_domain"`
	// TTL of answers. Default 0, as Consul.
	TTL time.Duration `koanf:"ttl"`
	// NegativeTTL is the SOA minimum of NXDOMAIN and empty answers.
	// Default 1s.
	NegativeTTL time.Duration `koanf:"negative_ttl"`
	// OnlyPassing leaves instances in warning out of answers. Default
	// false.
	OnlyPassing bool `koanf:"only_passing"`
}

// The dns section's defaults.
const (
	DefaultDNSAddr     = "127.0.0.1:8600"
	DefaultDNSDomain   = "hail."
	DefaultNegativeTTL = time.Second
)

// DefaultDNS is the dns section with its defaults.
func DefaultDNS() DNSConfig {
	return DNSConfig{Addr: DefaultDNSAddr, Domain: DefaultDNSDomain, NegativeTTL: DefaultNegativeTTL}
}

// maxTTL bounds dns.ttl and dns.negative_ttl: a day.
const maxTTL = 24 * time.Hour

// Validate checks the section and names the faulty key.
func (c DNSConfig) Validate() error {
	var errs []error
	if c.Domain == "" {
		errs = append(errs, config.FieldError("dns.domain", "is empty"))
	}
	for key, d := range map[string]string{"dns.domain": c.Domain, "dns.alt_domain": c.AltDomain} {
		if d == "" {
			continue
		}
		if _, ok := dns.IsDomainName(d); !ok || strings.ContainsAny(d, `\ `) || d == "." {
			errs = append(errs, config.FieldError(key, "%q is not a domain name like hail. or consul.", truncate(d)))
		}
	}
	if c.AltDomain != "" && dns.CanonicalName(c.AltDomain) == dns.CanonicalName(c.Domain) {
		errs = append(errs, config.FieldError("dns.alt_domain", "is dns.domain again"))
	}
	if c.TTL < 0 || c.TTL > maxTTL {
		errs = append(errs, config.FieldError("dns.ttl", "%v is out of 0..24h", c.TTL))
	}
	if c.NegativeTTL < 0 || c.NegativeTTL > maxTTL {
		errs = append(errs, config.FieldError("dns.negative_ttl", "%v is out of 0..24h", c.NegativeTTL))
	}
	return errors.Join(errs...)
}

// DNS answers Consul-style DNS questions from a View.
type DNS struct {
	v           *View
	domains     []string
	ttl, negTTL uint32
	onlyPassing bool

	malformed *metrics.Counter
	truncated *metrics.Counter
	// rcodes are the answers' counters by rcode, made when first used.
	rcodes [16]atomic.Pointer[metrics.Counter]
	set    *metrics.Set
}

// NewDNS answers from v as c says; counters go to set.
func NewDNS(v *View, c DNSConfig, set *metrics.Set) *DNS {
	if set == nil {
		set = metrics.NewSet()
	}
	d := &DNS{
		v: v, ttl: uint32(c.TTL / time.Second), negTTL: uint32(c.NegativeTTL / time.Second), onlyPassing: c.OnlyPassing,
		malformed: set.GetOrCreateCounter("hail_dns_malformed_total"),
		truncated: set.GetOrCreateCounter("hail_dns_truncated_total"),
		set:       set,
	}
	for _, dom := range []string{c.Domain, c.AltDomain} {
		if dom != "" {
			d.domains = append(d.domains, dns.CanonicalName(dom))
		}
	}
	return d
}

// Malformed is the number of packets dropped because they did not parse.
func (d *DNS) Malformed() uint64 { return d.malformed.Get() }

// handle answers one packet; nil drops it (it does not parse, or is not
// a question: any answer could be used to amplify). max is the size an
// answer may take on this transport before the client's EDNS0 size.
func (d *DNS) handle(pkt []byte, udp bool, sc *scratch) []byte {
	req := new(dns.Msg)
	if err := req.Unpack(pkt); err != nil || req.Response || len(req.Question) != 1 {
		d.malformed.Inc()
		return nil
	}
	size := msgSize(req, udp)
	if out := d.fast(req, size, sc); out != nil {
		return out
	}
	var resp *dns.Msg
	if req.Opcode != dns.OpcodeQuery {
		resp = new(dns.Msg).SetRcode(req, dns.RcodeNotImplemented)
	} else {
		// No record takes under 12 bytes: more than size/12 cannot fit,
		// and are not built.
		resp = d.answer(req, size/12)
	}
	d.fit(req, resp, udp, size)
	d.answered(resp.Rcode)
	out, err := resp.PackBuffer(sc.out)
	if err != nil {
		return nil
	}
	return out
}

// fast answers the commonest question, A or AAAA of a whole service with
// instances to answer, from the addresses packed per snapshot
// (addrAnswer); nil: the general path answers.
func (d *DNS) fast(req *dns.Msg, size int, sc *scratch) []byte {
	q := req.Question[0]
	if req.Opcode != dns.OpcodeQuery || (q.Qtype != dns.TypeA && q.Qtype != dns.TypeAAAA) || (q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY) {
		return nil
	}
	n := parseName(q.Name, d.domains, d.v.Datacenter())
	if n.kind != nameService {
		return nil
	}
	s, tag := d.lookup(n.labels)
	if s == nil || tag != "" {
		return nil
	}
	width := 4
	if q.Qtype == dns.TypeAAAA {
		width = 16
	}
	ips := s.servedAddrs(d.onlyPassing, width == 16)
	if len(ips) == 0 {
		return nil // NOERROR with the SOA
	}
	return d.addrAnswer(req, ips, width, size, sc)
}

// answered counts an answer by its rcode.
func (d *DNS) answered(rcode int) {
	if rcode >= 0 && rcode < len(d.rcodes) {
		if c := d.rcodes[rcode].Load(); c != nil {
			c.Inc()
			return
		}
	}
	c := d.set.GetOrCreateCounter(`hail_dns_answers_total{rcode="` + dns.RcodeToString[rcode] + `"}`)
	if rcode >= 0 && rcode < len(d.rcodes) {
		d.rcodes[rcode].Store(c)
	}
	c.Inc()
}

// msgSize is what an answer may take: over UDP 512 bytes, or the
// client's EDNS0 size; over TCP a message's limit.
func msgSize(req *dns.Msg, udp bool) int {
	if !udp {
		return dns.MaxMsgSize
	}
	if opt := req.IsEdns0(); opt != nil {
		return min(max(dns.MinMsgSize, int(opt.UDPSize())), dns.MaxMsgSize)
	}
	return dns.MinMsgSize
}

// fit cuts resp to size, whole records, TC set when any is left out.
func (d *DNS) fit(req, resp *dns.Msg, udp bool, size int) {
	if req.IsEdns0() != nil {
		resp.SetEdns0(uint16(size), false)
	}
	answers, capped := len(resp.Answer), resp.Truncated
	resp.Truncate(size)
	if !udp && !capped && len(resp.Answer) == answers {
		// Over TCP the answer is whole; only additional records (which a
		// client can ask for) may have been cut.
		resp.Truncated = false
	}
	if resp.Truncated {
		d.truncated.Inc()
	}
}

// answer builds the reply to a question, with at most most records in
// its answer (more set TC).
func (d *DNS) answer(req *dns.Msg, most int) *dns.Msg {
	resp := new(dns.Msg).SetReply(req)
	resp.Authoritative = true
	resp.RecursionAvailable = false
	q := req.Question[0]
	n := parseName(q.Name, d.domains, d.v.Datacenter())
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		n.kind = nameOutside
	}
	switch n.kind {
	case nameOutside:
		resp.Authoritative = false
		resp.Rcode = dns.RcodeRefused
		return resp
	case nameUnknown:
		return d.negative(resp, n.domain, dns.RcodeNameError)
	case nameApex:
		if q.Qtype == dns.TypeSOA {
			resp.Answer = append(resp.Answer, d.soa(n.domain))
			return resp
		}
		return d.negative(resp, n.domain, dns.RcodeSuccess)
	case nameInstance:
		rec, ok := d.v.byID(n.labels[0])
		if !ok || rec.Address == "" {
			return d.negative(resp, n.domain, dns.RcodeNameError)
		}
		ip, _ := netip.ParseAddr(rec.Address)
		resp.Answer = d.addrRecords(resp.Answer, q.Name, ip.Unmap(), q.Qtype)
	case nameService:
		s, tag := d.lookup(n.labels)
		if s == nil {
			return d.negative(resp, n.domain, dns.RcodeNameError)
		}
		d.serviceAnswer(resp, q, n.domain, s, tag, most)
	}
	if len(resp.Answer) == 0 {
		return d.negative(resp, n.domain, dns.RcodeSuccess)
	}
	return resp
}

// lookup finds the service (with instances) the labels name, and the
// tag they ask for.
func (d *DNS) lookup(labels []string) (*service, string) {
	for _, c := range serviceCandidates(labels) {
		if s := d.v.service(c.service); s != nil && len(s.insts) > 0 {
			return s, c.tag
		}
	}
	return nil, ""
}

// serviceAnswer answers a service question: every instance that takes
// traffic, in random order.
func (d *DNS) serviceAnswer(resp *dns.Msg, q dns.Question, domain string, s *service, tag string, most int) {
	var picked []*instance
	if tag == "" {
		picked = slices.Clone(s.served(d.onlyPassing))
	} else {
		for _, in := range s.served(d.onlyPassing) {
			if in.hasTags([]string{tag}) {
				picked = append(picked, in)
			}
		}
	}
	// In random order, drawn as needed (Fisher-Yates, step by step): an
	// answer cut at most records shuffles no more than it sends.
	for i := range picked {
		if len(resp.Answer) >= most {
			resp.Truncated = true
			break
		}
		j := i + rand.N(len(picked)-i)
		picked[i], picked[j] = picked[j], picked[i]
		in := picked[i]
		if q.Qtype != dns.TypeSRV {
			resp.Answer = d.addrRecords(resp.Answer, q.Name, in.ip, q.Qtype)
			continue
		}
		target := dns.Fqdn(in.address)
		if in.ip.IsValid() {
			target = in.id + ".instance." + domain
		}
		resp.Answer = append(resp.Answer, &dns.SRV{
			Hdr:      dns.RR_Header{Name: q.Name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: d.ttl},
			Priority: 1, Weight: uint16(in.weight), Port: uint16(in.port), Target: target,
		})
		if in.ip.IsValid() {
			resp.Extra = d.addrRecords(resp.Extra, target, in.ip, dns.TypeANY)
		}
	}
}

// addrRecords appends the A or AAAA record of a (both for ANY) named name.
func (d *DNS) addrRecords(rrs []dns.RR, name string, ip netip.Addr, qtype uint16) []dns.RR {
	if !ip.IsValid() {
		return rrs
	}
	hdr := dns.RR_Header{Name: name, Class: dns.ClassINET, Ttl: d.ttl}
	switch {
	case ip.Is4() && (qtype == dns.TypeA || qtype == dns.TypeANY):
		hdr.Rrtype = dns.TypeA
		return append(rrs, &dns.A{Hdr: hdr, A: ip.AsSlice()})
	case ip.Is6() && (qtype == dns.TypeAAAA || qtype == dns.TypeANY):
		hdr.Rrtype = dns.TypeAAAA
		return append(rrs, &dns.AAAA{Hdr: hdr, AAAA: ip.AsSlice()})
	}
	return rrs
}

// negative answers rcode with the domain's SOA in the authority section.
func (d *DNS) negative(resp *dns.Msg, domain string, rcode int) *dns.Msg {
	resp.Rcode = rcode
	resp.Answer = nil
	resp.Extra = nil
	resp.Ns = []dns.RR{d.soa(domain)}
	return resp
}

func (d *DNS) soa(domain string) *dns.SOA {
	return &dns.SOA{
		Hdr: dns.RR_Header{Name: domain, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: d.negTTL},
		Ns:  "ns." + domain, Mbox: "hostmaster." + domain,
		Serial: uint32(d.v.serviceList().index), Refresh: 3600, Retry: 600, Expire: 86400, Minttl: d.negTTL,
	}
}

// String names the domains served, for logs.
func (d *DNS) String() string { return fmt.Sprint(d.domains) }
