package events

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateRegion(t *testing.T) {
	for _, tc := range []struct {
		region string
		ok     bool
	}{
		{"eu", true},
		{"us-east-1", true},
		{"local", true},
		{"ap_south", true},
		{strings.Repeat("a", MaxRegionLen), true},
		{"", false},
		{strings.Repeat("a", MaxRegionLen+1), false},
		{"eu.west", false}, // a domain and a key token hold no dot
		{"*", false},       // a query's "all regions"
		{"eu>", false},
		{"EU", false},
		{"eu west", false},
		{"eu\x00", false},
	} {
		t.Run(tc.region, func(t *testing.T) {
			err := ValidateRegion(tc.region)
			if got := err == nil; got != tc.ok {
				t.Fatalf("ValidateRegion(%q) = %v, want ok %v", tc.region, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}

func FuzzValidateRegion(f *testing.F) {
	for _, s := range []string{"eu", "us-east-1", "", "a.b", "*", ">"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateRegion(s) != nil {
			return
		}
		if strings.ContainsAny(s, ".*> \t\r\n") || len(s) > MaxRegionLen {
			t.Fatalf("ValidateRegion accepted %q", s)
		}
	})
}

func TestRegionQueries(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		ok   bool
	}{
		{"own", `{}`, true},
		{"named", `{"region":"us"}`, true},
		{"all", `{"region":"*"}`, true},
		{"all paged", `{"region":"*","limit":10}`, false},
		{"named paged", `{"region":"us","limit":10}`, true},
		{"bad", `{"region":"us.east"}`, false},
		{"too long", `{"region":"` + strings.Repeat("a", MaxRegionLen+1) + `"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeInstancesQuery([]byte(tc.body))
			if got := err == nil; got != tc.ok {
				t.Fatalf("instances query %s: err %v, want ok %v", tc.body, err, tc.ok)
			}
			if tc.name == "all paged" || tc.name == "named paged" {
				return
			}
			_, err = DecodeServicesQuery([]byte(tc.body))
			if got := err == nil; got != tc.ok {
				t.Fatalf("services query %s: err %v, want ok %v", tc.body, err, tc.ok)
			}
		})
	}
}

func FuzzDecodeServicesQuery(f *testing.F) {
	f.Add([]byte(`{"region":"us"}`))
	f.Add([]byte(`{"region":"*"}`))
	f.Add([]byte(``))
	f.Add([]byte(`{"region":"us.east"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		q, err := DecodeServicesQuery(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if q.Region != "" && q.Region != AllRegions && ValidateRegion(q.Region) != nil {
			t.Fatalf("accepted query names region %q", q.Region)
		}
	})
}
