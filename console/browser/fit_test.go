package browser_test

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hailsd/hail/console"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/internal/regiontest"
	"github.com/hailsd/hail/roles"
)

// box is an element's place in the window, from getBoundingClientRect,
// and whether it is the element seen at its centre (nothing drawn over
// it).
type box struct {
	Left, Right, Top, Bottom, Width float64
	OnTop                           bool
	WinW, WinH                      float64
}

func measure(selector string) chromedp.Action[box] {
	return chromedp.Evaluate[box](fmt.Sprintf(`(function () {
		var el = document.querySelector(%q);
		if (!el) return null;
		var r = el.getBoundingClientRect();
		var seen = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
		return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width,
			ontop: seen === el || el.contains(seen), winw: window.innerWidth, winh: window.innerHeight};
	})()`, selector))
}

// At 1280x900, the width the README shows, every instance's Drain and
// Timeline buttons are inside the window without scrolling, the table
// within its card; a critical stretch of 1.5 s twenty minutes ago is a
// mark of a few px on the instance's strip and on the service's chart,
// nothing drawn over it; the AZ column, empty in every row, is left out.
func TestPageFits1280(t *testing.T) {
	r := regiontest.New(t)
	r.StartNode(discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 200 * time.Millisecond, Timeout: 100 * time.Millisecond}}})
	var insts []*fakeinst.Instance
	for range 3 {
		insts = append(insts, fakeinst.Start(t, r.URL, fakeinst.Options{Service: "echo", Edit: func(a *events.Announce) {
			a.Version = "1.0.0"
			a.Address, a.Port = "10.0.0.7", 8080
			a.Tags = []string{"blue"}
		}}))
	}
	_, srv := r.StartConsole(console.RegionConfig{})
	// A short critical stretch in the middle of the hour, passing before
	// and after, as discovery would have told it.
	id := insts[1].ID
	node := r.Instances()[id].Node
	at := time.Now().Add(-20 * time.Minute)
	for _, ev := range []events.HealthEvent{
		{ID: id, Service: "echo", Status: events.Passing, Previous: events.Passing, Reason: "registered", Node: node, TS: at.Add(-10 * time.Minute)},
		{ID: id, Service: "echo", Status: events.Critical, Previous: events.Passing, Reason: "3 heartbeats missed", Node: node, TS: at},
		{ID: id, Service: "echo", Status: events.Passing, Previous: events.Critical, Reason: "heartbeat answered", Node: node, TS: at.Add(1500 * time.Millisecond)},
	} {
		data, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.NC.Publish(events.Subjects{}.Health("echo", id), data); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx := browser(t)
	row := fmt.Sprintf(`tr.instance[data-id=%q]`, id)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/?service=echo"),
		chromedp.WaitVisible(chromedp.CSS(`#live.on`)),
		chromedp.WaitVisible(chromedp.CSS(row+` svg.strip rect[data-status="critical"]`)),
	); err != nil {
		t.Fatalf("the page did not draw the short critical stretch: %v", err)
	}
	for _, inst := range insts {
		for _, button := range []string{"drain", "timeline"} {
			sel := fmt.Sprintf(`tr.instance[data-id=%q] button.%s`, inst.ID, button)
			b, err := chromedp.Run(ctx, measure(sel))
			if err != nil {
				t.Fatal(err)
			}
			if b.Width == 0 || b.Left < 0 || b.Right > b.WinW || b.Bottom > b.WinH || !b.OnTop {
				t.Errorf("%s at %+v: not inside the %vx%v window, or covered", sel, b, b.WinW, b.WinH)
			}
		}
	}
	fits, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(function () {
		var s = document.getElementById("sec-instances");
		return s.scrollWidth <= s.clientWidth;
	})()`))
	if err != nil || !fits {
		t.Errorf("the instances table is wider than its card (%v)", err)
	}
	for name, sel := range map[string]string{
		"the instance's strip": row + ` svg.strip rect[data-status="critical"]`,
		"the service's chart":  `#services tr[data-service="echo"] svg.stacked rect[data-status="critical"]`,
	} {
		b, err := chromedp.Run(ctx, measure(sel))
		if err != nil {
			t.Fatal(err)
		}
		if b.Width < 3 || !b.OnTop {
			t.Errorf("the 1.5 s critical stretch on %s: %.1f px wide, seen %v; want 3 px or more, nothing over it", name, b.Width, b.OnTop)
		}
	}
	heads, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.prototype.map.call(document.querySelectorAll("#instances th, #nodes th"), function (th) { return th.textContent; })`))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range heads {
		if h == "az" {
			t.Errorf("an az column, empty in every row, is shown: %q", heads)
		}
	}
}

// The login page of a console behind tokens looks like the rest: the
// page's stylesheet (served without a token) and its card.
func TestLoginPageIsStyled(t *testing.T) {
	r := regiontest.New(t)
	r.StartNode(discovery.Config{})
	region, _ := r.StartConsole(console.RegionConfig{})
	toks, err := console.ParseTokens("read " + roles.HashToken("let-me-read"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(region.Handler(console.Guard{Tokens: toks}))
	t.Cleanup(srv.Close)
	ctx := browser(t)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`section.login input[name="token"]`)),
	); err != nil {
		t.Fatalf("no login form: %v", err)
	}
	style, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]string](`(function () {
		var s = getComputedStyle(document.body), card = getComputedStyle(document.querySelector("section.login"));
		return {font: s.fontFamily, card: card.backgroundColor, path: location.pathname};
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	if style["path"] != "/login" || style["font"] == "" || style["font"][:9] != "system-ui" || style["card"] != "rgb(255, 255, 255)" {
		t.Errorf("login page %v: want /login in the page's font (system-ui) on a white card", style)
	}
}
