package consul

import (
	"encoding/binary"
	"math/rand/v2"

	"github.com/miekg/dns"
)

// scratch is one reader's buffers: the answer is written into out, and
// perm is the identity permutation a shuffle draws from and restores
// (swaps: the shuffle's draws), so that a shuffle costs what it draws.
type scratch struct {
	out   []byte
	perm  []int32
	swaps []int32
}

func newScratch() *scratch { return &scratch{out: make([]byte, dns.MaxMsgSize)} }

// Header flags of an answer (RFC 1035 4.1.1).
const (
	flagQR = 1 << 15
	flagAA = 1 << 10
	flagTC = 1 << 9
	flagRD = 1 << 8
	flagCD = 1 << 4
)

// addrAnswer answers an A (width 4) or AAAA (width 16) question for a
// whole service straight into sc.out: the header, the question as
// asked, then as many records as fit size, in random order, each
// naming the question by a pointer (so 16 or 28 bytes), then the OPT
// record when the question had one. ips are the addresses packed
// width bytes each. Nothing else is built: an answer over UDP, cut to
// what fits, costs the records it holds, not the instances the service
// has. It returns nil when the question's name does not pack (the
// general path answers it then).
func (d *DNS) addrAnswer(req *dns.Msg, ips []byte, width, size int, sc *scratch) []byte {
	q := req.Question[0]
	buf := sc.out
	off, err := dns.PackDomainName(q.Name, buf, 12, nil, false)
	if err != nil || off+4 > len(buf) {
		return nil
	}
	binary.BigEndian.PutUint16(buf[off:], q.Qtype)
	binary.BigEndian.PutUint16(buf[off+2:], q.Qclass)
	off += 4
	const optLen = 11
	edns := req.IsEdns0() != nil
	room := size - off
	if edns {
		room -= optLen
	}
	rrLen := 12 + width
	n := len(ips) / width
	k := min(n, max(room, 0)/rrLen)
	rrtype := dns.TypeA
	if width == 16 {
		rrtype = dns.TypeAAAA
	}
	perm := sc.permutation(n)
	for i := range k {
		// Fisher-Yates, step by step: only the k records sent are drawn.
		j := i + rand.N(n-i)
		perm[i], perm[j] = perm[j], perm[i]
		sc.swaps = append(sc.swaps, int32(j))
		p := int(perm[i]) * width
		buf[off], buf[off+1] = 0xC0, 12 // the name: a pointer to the question's
		binary.BigEndian.PutUint16(buf[off+2:], rrtype)
		binary.BigEndian.PutUint16(buf[off+4:], dns.ClassINET)
		binary.BigEndian.PutUint32(buf[off+6:], d.ttl)
		binary.BigEndian.PutUint16(buf[off+10:], uint16(width))
		copy(buf[off+12:], ips[p:p+width])
		off += rrLen
	}
	sc.restore()
	flags := uint16(flagQR | flagAA)
	if req.RecursionDesired {
		flags |= flagRD
	}
	if req.CheckingDisabled {
		flags |= flagCD
	}
	if k < n {
		flags |= flagTC
		d.truncated.Inc()
	}
	binary.BigEndian.PutUint16(buf[0:], req.Id)
	binary.BigEndian.PutUint16(buf[2:], flags)
	binary.BigEndian.PutUint16(buf[4:], 1)
	binary.BigEndian.PutUint16(buf[6:], uint16(k))
	binary.BigEndian.PutUint16(buf[8:], 0)
	binary.BigEndian.PutUint16(buf[10:], 0)
	if edns {
		binary.BigEndian.PutUint16(buf[10:], 1)
		buf[off] = 0 // the root name
		binary.BigEndian.PutUint16(buf[off+1:], dns.TypeOPT)
		binary.BigEndian.PutUint16(buf[off+3:], uint16(size))
		binary.BigEndian.PutUint32(buf[off+5:], 0)
		binary.BigEndian.PutUint16(buf[off+9:], 0)
		off += optLen
	}
	d.answered(dns.RcodeSuccess)
	return buf[:off]
}

// permutation returns the identity over n, grown when n is larger than
// any before.
func (sc *scratch) permutation(n int) []int32 {
	for len(sc.perm) < n {
		sc.perm = append(sc.perm, int32(len(sc.perm)))
	}
	return sc.perm[:n]
}

// restore undoes the last shuffle's swaps, the last first, leaving the
// identity again.
func (sc *scratch) restore() {
	for i := len(sc.swaps) - 1; i >= 0; i-- {
		j := sc.swaps[i]
		sc.perm[i], sc.perm[j] = sc.perm[j], sc.perm[i]
	}
	sc.swaps = sc.swaps[:0]
}
