package events

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestValidateService(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string // substring; empty means valid
	}{
		{"simple", "echo", ""},
		{"dotted", "com.example.login", ""},
		{"underscore dash digits", "a_b-c.9", ""},
		{"eight tokens", "a.b.c.d.e.f.g.h", ""},
		{"empty", "", "empty"},
		{"nine tokens", "a.b.c.d.e.f.g.h.i", "9 tokens"},
		{"upper", "Echo", "upper case"},
		{"star", "echo.*", "wildcard"},
		{"gt", ">", "wildcard"},
		{"space", "ec ho", "a space"},
		{"leading dot", ".echo", "empty token"},
		{"trailing dot", "echo.", "empty token"},
		{"double dot", "a..b", "empty token"},
		{"too long", strings.Repeat("a", 129), "129 bytes"},
		{"max length", strings.Repeat("a", 128), ""},
		{"non ascii", "échо", "non-ASCII"},
		{"control", "a\x00b", "control byte"},
		{"last token a uuid", "echo.0190f1b6-0000-7000-8000-000000000000", "ends in a UUID"},
		{"a uuid alone", "0190f1b6-0000-7000-8000-000000000000", "ends in a UUID"},
		{"a uuid before the last token", "0190f1b6-0000-7000-8000-000000000000.echo", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateService(tt.in)
			checkErr(t, err, tt.wantErr)
		})
	}
}

func TestValidateEndpoint(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"simple", "say", ""},
		{"mixed case", "Login_v2-x", ""},
		{"empty", "", "empty"},
		{"dot", "a.b", `'.'`},
		{"wildcard", "*", "wildcard"},
		{"too long", strings.Repeat("x", 65), "65 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, ValidateEndpoint(tt.in), tt.wantErr)
		})
	}
}

func TestValidateID(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"v4", "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f", ""},
		{"v7", "0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a6b", ""},
		{"v5, derived from a name", "f0eabd93-2bad-57bb-a02b-6dbfc99468d1", ""},
		{"upper", "6F1C2D3E-4A5B-4C6D-8E7F-9A0B1C2D3E4F", "lower case"},
		{"v1", "6f1c2d3e-4a5b-1c6d-8e7f-9a0b1c2d3e4f", "version 1"},
		{"bad variant", "6f1c2d3e-4a5b-4c6d-ce7f-9a0b1c2d3e4f", "variant"},
		{"short", "6f1c2d3e", "36 characters"},
		{"no dashes", "6f1c2d3e04a5b04c6d08e7f09a0b1c2d3e4f", "dash"},
		{"wildcard", "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4*", `'*'`},
		{"empty", "", "36 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, ValidateID(tt.in), tt.wantErr)
			if got := IsID(tt.in); got != (tt.wantErr == "") {
				t.Errorf("IsID(%q) = %v, want %v", tt.in, got, tt.wantErr == "")
			}
		})
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("got error %v, want none", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("got no error, want one containing %q", want)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("error %v does not wrap ErrInvalid", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("got error %q, want it to contain %q", err, want)
	}
}

func FuzzValidateService(f *testing.F) {
	for _, s := range []string{"echo", "com.example.login", "a..b", "*", ">", "Echo", "a.b.c.d.e.f.g.h.i", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateService(s) != nil {
			return
		}
		// A valid service is safe to embed in a subject: no wildcard, no
		// whitespace, no empty token, and it parses back out unchanged.
		if strings.ContainsAny(s, "*> \t\r\n") || strings.Contains(s, "..") || len(s) > MaxServiceLen {
			t.Fatalf("accepted unsafe service %q", s)
		}
		var sub Subjects
		got, err := sub.Parse().Announce(sub.Announce(s))
		if err != nil || got != s {
			t.Fatalf("ParseAnnounce(Announce(%q)) = %q, %v", s, got, err)
		}
	})
}

func FuzzValidateEndpoint(f *testing.F) {
	for _, s := range []string{"say", "a.b", "*", "", "x-Y_9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateEndpoint(s) != nil {
			return
		}
		if strings.ContainsAny(s, "*>. \t\r\n") || s == "" {
			t.Fatalf("accepted unsafe endpoint %q", s)
		}
	})
}

func FuzzValidateID(f *testing.F) {
	for _, s := range []string{"6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f", "0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a6b", "x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if IsID(s) != (ValidateID(s) == nil) {
			t.Fatalf("IsID(%q) = %v, but ValidateID says %v", s, IsID(s), ValidateID(s))
		}
		// Against an independent reading: google/uuid's, in its own
		// canonical form, version 4, 5 or 7, the RFC 9562 variant.
		u, err := uuid.Parse(s)
		want := err == nil && s == u.String() && (u.Version() == 4 || u.Version() == 5 || u.Version() == 7) && u.Variant() == uuid.RFC4122
		if IsID(s) != want {
			t.Fatalf("IsID(%q) = %v, google/uuid says %v", s, IsID(s), want)
		}
		if ValidateID(s) != nil {
			return
		}
		if len(s) != 36 || strings.ToLower(s) != s || strings.ContainsAny(s, ".*> ") {
			t.Fatalf("accepted %q", s)
		}
	})
}

func TestOwnerRendezvous(t *testing.T) {
	nodes := []string{"n1", "n2", "n3"}
	counts := map[string]int{}
	for i := range 3000 {
		id := fmt.Sprintf("inst-%d", i)
		o := Owner(nodes, id)
		counts[o]++
		if o2 := Owner([]string{"n3", "n1", "n2"}, id); o2 != o {
			t.Fatalf("owner depends on order: %s vs %s", o, o2)
		}
		// n2 leaving moves only what n2 owned.
		if after := Owner([]string{"n1", "n3"}, id); o != "n2" && after != o {
			t.Fatalf("%s moved from %s to %s when n2 left", id, o, after)
		}
	}
	for _, n := range nodes {
		if counts[n] < 900 || counts[n] > 1100 {
			t.Errorf("node %s owns %d of 3000", n, counts[n])
		}
	}
	if Owner(nil, "x") != "" {
		t.Error("owner among no nodes")
	}
}
