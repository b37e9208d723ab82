package events

import (
	"testing"
)

const (
	testID   = "0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a6b"
	testNode = "5b3e6a52-9d0c-4b8a-a1f2-3c4d5e6f7a8b"
)

func TestSubjectBuilders(t *testing.T) {
	var s Subjects
	tests := []struct{ got, want string }{
		{s.Announce("echo"), "hail.announce.echo"},
		{s.Deregister("com.example.login"), "hail.deregister.com.example.login"},
		{s.Heartbeat(testID), "hail.hb." + testID},
		{s.Health("echo", testID), "hail.health.echo." + testID},
		{s.Discover(), "hail.discover"},
		{s.Svc("echo", "say"), "hail.svc.echo.say"},
		{s.QueueGroup("echo"), "hail.echo"},
		{s.Inst(testID, "say"), "hail.inst." + testID + ".say"},
		{s.Route("a.b", "say"), "hail.route.a.b.say"},
		{s.DiscoveryServices(), "hail.discovery.services"},
		{s.DiscoveryInstances(), "hail.discovery.instances"},
		{Subjects{Prefix: "acme.hail"}.Announce("echo"), "acme.hail.announce.echo"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestParseServiceLast(t *testing.T) {
	var s Subjects
	tests := []struct {
		name, subject     string
		parse             func(string) (string, string, error)
		wantA, wantB, err string
	}{
		{"route simple", "hail.route.echo.say", s.Parse().Route, "echo", "say", ""},
		{"route dotted service", "hail.route.com.example.login.Login", s.Parse().Route, "com.example.login", "Login", ""},
		{"route no endpoint", "hail.route.echo", s.Parse().Route, "", "", "no endpoint"},
		{"route wildcard", "hail.route.echo.*", s.Parse().Route, "", "", "wildcard"},
		{"route upper service", "hail.route.Echo.say", s.Parse().Route, "", "", "upper case"},
		{"route wrong prefix", "other.route.echo.say", s.Parse().Route, "", "", "does not start"},
		{"svc", "hail.svc.echo.say", s.Parse().Svc, "echo", "say", ""},
		{"health", "hail.health.a.b." + testID, s.Parse().Health, "a.b", testID, ""},
		{"health bad id", "hail.health.echo.nope", s.Parse().Health, "", "", "canonical UUID"},
		{"inst", "hail.inst." + testID + ".say", s.Parse().Inst, testID, "say", ""},
		{"inst bad id", "hail.inst.x.say", s.Parse().Inst, "", "", "canonical UUID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b, err := tt.parse(tt.subject)
			checkErr(t, err, tt.err)
			if a != tt.wantA || b != tt.wantB {
				t.Errorf("got %q, %q; want %q, %q", a, b, tt.wantA, tt.wantB)
			}
		})
	}
}

func TestParseAnnounceAndHeartbeat(t *testing.T) {
	s := Subjects{Prefix: "acme"}
	if got, err := s.Parse().Announce("acme.announce.com.example"); err != nil || got != "com.example" {
		t.Errorf("ParseAnnounce = %q, %v", got, err)
	}
	if _, err := s.Parse().Announce("acme.announce.>"); err == nil {
		t.Error("ParseAnnounce accepted a wildcard")
	}
	if _, err := s.Parse().Deregister("hail.deregister.echo"); err == nil {
		t.Error("ParseDeregister accepted another prefix")
	}
	if got, err := s.Parse().Heartbeat("acme.hb." + testID); err != nil || got != testID {
		t.Errorf("ParseHeartbeat = %q, %v", got, err)
	}
}

func TestNewSubjects(t *testing.T) {
	for _, p := range []string{"hail", "acme.hail", "a-b_c"} {
		if _, err := NewSubjects(p); err != nil {
			t.Errorf("NewSubjects(%q): %v", p, err)
		}
	}
	for _, p := range []string{"", "a..b", "hail.*", ">", "a b"} {
		if _, err := NewSubjects(p); err == nil {
			t.Errorf("NewSubjects(%q) accepted a bad prefix", p)
		}
	}
}

func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{"hail.route.echo.say", "hail.route.a.b.c", "hail.route.", "hail.route..x", "hail.route.*.>"} {
		f.Add(s)
	}
	var sub Subjects
	f.Fuzz(func(t *testing.T, subject string) {
		service, endpoint, err := sub.Parse().Route(subject)
		if err != nil {
			return
		}
		if got := sub.Route(service, endpoint); got != subject {
			t.Fatalf("Route(ParseRoute(%q)) = %q", subject, got)
		}
		if ValidateService(service) != nil || ValidateEndpoint(endpoint) != nil {
			t.Fatalf("ParseRoute(%q) returned invalid names %q %q", subject, service, endpoint)
		}
	})
}

func FuzzParseHealth(f *testing.F) {
	f.Add("hail.health.echo." + testID)
	f.Add("hail.health.echo")
	var sub Subjects
	f.Fuzz(func(t *testing.T, subject string) {
		service, id, err := sub.Parse().Health(subject)
		if err != nil {
			return
		}
		if got := sub.Health(service, id); got != subject {
			t.Fatalf("Health(ParseHealth(%q)) = %q", subject, got)
		}
	})
}

func FuzzParseInst(f *testing.F) {
	f.Add("hail.inst." + testID + ".say")
	f.Add("hail.inst.x")
	var sub Subjects
	f.Fuzz(func(t *testing.T, subject string) {
		id, endpoint, err := sub.Parse().Inst(subject)
		if err != nil {
			return
		}
		if got := sub.Inst(id, endpoint); got != subject {
			t.Fatalf("Inst(ParseInst(%q)) = %q", subject, got)
		}
	})
}

func TestScopedSubjects(t *testing.T) {
	s := Subjects{}
	for _, tc := range []struct {
		got, want string
	}{
		{s.HeartbeatOf("echo", "id1", false), "hail.hb.id1"},
		{s.HeartbeatOf("com.example.login", "id1", true), "hail.hb.com.example.login.id1"},
		{s.InstOf("echo", "id1", "say", false), "hail.inst.id1.say"},
		{s.InstOf("com.example.login", "id1", "say", true), "hail.inst.com.example.login.id1.say"},
		{HeartbeatTarget("echo", "id1", true), "echo.id1"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %s, want %s", tc.got, tc.want)
		}
	}
}
