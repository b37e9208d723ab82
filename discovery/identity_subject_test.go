package discovery

import (
	"testing"

	"github.com/hailsd/hail/events"
)

// The identity form's last token is an id when it is a canonical UUID;
// anything else is the v1 form, whose whole rest is the service.
func TestControlSubject(t *testing.T) {
	const id = "0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a6b"
	var s events.Subjects
	for _, c := range []struct {
		kind, subject   string
		service, wantID string
		bad             bool
	}{
		{"announce", "hail.announce.echo", "echo", "", false},
		{"announce", "hail.announce.com.example.login", "com.example.login", "", false},
		{"announce", "hail.announce.echo." + id, "echo", id, false},
		{"announce", "hail.announce.com.example.login." + id, "com.example.login", id, false},
		{"deregister", "hail.deregister.echo." + id, "echo", id, false},
		{"deregister", "hail.deregister.echo", "echo", "", false},
		// Upper case is no canonical id: the v1 form, whose service
		// name refuses it.
		{"announce", "hail.announce.echo.0190F1B6-3C4D-7E8F-9A0B-1C2D3E4F5A6B", "", "", true},
		{"announce", "hail.announce." + id, "", "", true}, // an id and no service
		{"announce", "hail.deregister.echo." + id, "", "", true},
		{"deregister", "hail.announce.echo." + id, "", "", true},
		{"announce", "hail.announce.echo.*", "", "", true},
		{"announce", "hail.announce.echo..x", "", "", true},
	} {
		t.Run(c.subject, func(t *testing.T) {
			service, gotID, err := controlSubject(s, c.kind, c.subject)
			if c.bad {
				if err == nil {
					t.Fatalf("%s %s: parsed as %q %q, want an error", c.kind, c.subject, service, gotID)
				}
				return
			}
			if err != nil || service != c.service || gotID != c.wantID {
				t.Fatalf("%s %s: %q %q %v, want %q %q", c.kind, c.subject, service, gotID, err, c.service, c.wantID)
			}
		})
	}
}

// A subject from the bus is outside input: whatever it is, what comes
// back is a valid service and a canonical id or none.
func FuzzControlSubject(f *testing.F) {
	for _, s := range []string{"hail.announce.echo", "hail.announce.echo.0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a6b", "hail.deregister.a.b", "hail.announce..", "hail.announce.x.0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a6"} {
		f.Add(s)
	}
	var subj events.Subjects
	f.Fuzz(func(t *testing.T, subject string) {
		for _, kind := range []string{"announce", "deregister"} {
			service, id, err := controlSubject(subj, kind, subject)
			if err != nil {
				continue
			}
			if verr := events.ValidateService(service); verr != nil {
				t.Fatalf("%s: service %q: %v", subject, service, verr)
			}
			if id != "" && events.ValidateID(id) != nil {
				t.Fatalf("%s: id %q", subject, id)
			}
			want := "hail." + kind + "." + service
			if id != "" {
				want += "." + id
			}
			if want != subject {
				t.Fatalf("%s read back as %s", subject, want)
			}
		}
	})
}
