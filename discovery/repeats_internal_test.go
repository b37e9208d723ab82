package discovery

import (
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/hailsd/hail/events"
)

func TestRepeats(t *testing.T) {
	a := events.Announce{ID: "0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a6b", Service: "echo"}
	data := []byte(`{"id":"0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a6b","service":"echo","endpoints":[]}`)
	tests := []struct {
		name    string
		subject string
		data    []byte
		want    bool
	}{
		{"the same bytes on the same subject", "hail.announce.echo", data, true},
		{"the same bytes on another subject", "hail.announce.other", data, false},
		{"the same bytes on the identity subject", "hail.announce.echo." + a.ID, data, false},
		{"a byte more", "hail.announce.echo", append([]byte(" "), data...), false},
		{"a byte changed", "hail.announce.echo", []byte(strings.Replace(string(data), "echo", "ech0", 1)), false},
		{"nothing", "hail.announce.echo", nil, false},
	}
	r := newRepeats(repeatBytes, metrics.NewSet())
	if _, k, ok := r.get("hail.announce.echo", data); ok {
		t.Fatal("known before it was put")
	} else {
		r.put(k, "hail.announce.echo", len(data), a)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := r.hits.Get()
			got, _, ok := r.get(tt.subject, tt.data)
			if hits := r.hits.Get() - before; hits != map[bool]uint64{true: 1}[ok] {
				t.Errorf("counted %d known, want %d", hits, map[bool]uint64{true: 1}[ok])
			}
			if ok != tt.want {
				t.Fatalf("known = %v, want %v", ok, tt.want)
			}
			if ok && got.ID != a.ID {
				t.Fatalf("got announce of %s, want %s", got.ID, a.ID)
			}
		})
	}
}

func TestRepeatsBounded(t *testing.T) {
	// Room for two: the third forgets everything before it.
	cost := len("s") + 2*10 + repeatOverhead
	r := newRepeats(2*cost, metrics.NewSet())
	put := func(data string) {
		_, k, _ := r.get("s", []byte(data))
		r.put(k, "s", len(data), events.Announce{ID: data})
	}
	known := func(data string) bool { _, _, ok := r.get("s", []byte(data)); return ok }
	put("0123456789")
	put("abcdefghij")
	if !known("0123456789") || !known("abcdefghij") {
		t.Fatal("two within the bound are not both known")
	}
	put("ABCDEFGHIJ")
	if known("0123456789") || known("abcdefghij") || !known("ABCDEFGHIJ") {
		t.Fatal("past the bound, the old ones are still known or the new one is not")
	}
	if r.bytes > r.max {
		t.Fatalf("holds %d bytes, over its bound %d", r.bytes, r.max)
	}
	huge := strings.Repeat("x", r.max)
	put(huge)
	if known(huge) {
		t.Fatal("an announce larger than the bound is kept")
	}
	// Within a large bound, an announce over repeatMaxSize is not kept.
	r = newRepeats(repeatBytes, metrics.NewSet())
	large := strings.Repeat("y", repeatMaxSize+1)
	put(large)
	if known(large) {
		t.Fatal("an announce over repeatMaxSize is kept")
	}
	small := strings.Repeat("z", repeatMaxSize)
	put(small)
	if !known(small) {
		t.Fatal("an announce of repeatMaxSize is not kept")
	}
}
