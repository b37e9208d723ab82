package browser_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/internal/regiontest"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "write the admin page's screenshot to docs/admin.png")

// chromium finds a Chromium to drive. Outside CI a machine without one
// skips the browser test, saying so; in CI (.ci/run installs Debian's
// chromium) it must run.
func chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no Chromium found, and in CI the browser test must run: .ci/run installs Debian's chromium")
	}
	t.Skip("no Chromium found (apt-get install chromium); the browser test is skipped outside CI")
	return ""
}

func browser(t testing.TB) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
	})
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// edit sets a form field as a user's edit does: the value, then the input
// and change events the page listens to.
func edit(selector, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(function () {
		var el = document.querySelector(%q);
		el.value = %q;
		el.dispatchEvent(new Event("input", {bubbles: true}));
		el.dispatchEvent(new Event("change", {bubbles: true}));
	})()`, selector, value))
}

// The page lists a registered instance, shows its health change without a
// reload, and a strategy change made on it lands in hail_config; a bad one
// is refused on the page and writes nothing.
func TestPageInBrowser(t *testing.T) {
	e := regiontest.NewConsole(t)
	ctx := browser(t) // after the console: the browser leaves before the server closes
	a := fakeinst.Start(t, e.URL, fakeinst.Options{Service: "echo"})
	b := fakeinst.Start(t, e.URL, fakeinst.Options{Service: "echo", Weight: 200})
	row := func(id, status string) string {
		return fmt.Sprintf(`tr.instance[data-id=%q][data-status=%q]`, id, status)
	}

	// Listed, passing; then the page marks itself so a reload would show.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(e.Srv.URL+"/?service=echo"),
		chromedp.WaitVisible(chromedp.CSS(row(a.ID, "passing"))),
		chromedp.WaitVisible(chromedp.CSS(row(b.ID, "passing"))),
		chromedp.WaitVisible(chromedp.CSS(`#live.on`)),
		chromedp.Evaluate[chromedp.Void](`window.__loaded = "first"; undefined`),
	); err != nil {
		t.Fatalf("page did not list the instances: %v", err)
	}

	// b stops answering heartbeats: critical on the page, same page.
	b.Silence()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(row(b.ID, "critical")))); err != nil {
		t.Fatalf("page did not show the health change: %v", err)
	}
	loaded, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.__loaded || "reloaded"`))
	if err != nil {
		t.Fatal(err)
	}
	if loaded != "first" {
		t.Errorf("the page reloaded to show the change (marker %q)", loaded)
	}
	if got := e.Instances()[b.ID].Status; got != events.Critical {
		t.Errorf("hail_instances says %s, the page critical", got)
	}

	// A bad weight from the page: refused with a message, nothing written.
	weight := fmt.Sprintf(`input.weight[data-id=%q]`, a.ID)
	if err := chromedp.Do(ctx,
		edit(weight, "-5"),
		chromedp.Click(chromedp.CSS(`#save-route`)),
		chromedp.WaitVisible(chromedp.CSS(`#message.error`)),
	); err != nil {
		t.Fatalf("bad weight: %v", err)
	}
	msg, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#message`)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg, "out of range") {
		t.Errorf("message %q does not say what was wrong", msg)
	}
	if v, ok := e.Route("echo"); ok {
		t.Errorf("a refused change wrote route.echo = %s", v)
	}

	// A strategy change from the page lands in hail_config.
	if err := chromedp.Do(ctx,
		edit(weight, ""),
		edit(`select[name="strategy"]`, "round_robin"),
		edit(`input[name="hash_header"]`, "X-User"),
		chromedp.Click(chromedp.CSS(`#save-route`)),
		chromedp.WaitVisible(chromedp.CSS(`#message.ok`)),
	); err != nil {
		t.Fatalf("strategy change: %v", err)
	}
	bustest.Eventually(t, 10*time.Second, func() error {
		v, ok := e.Route("echo")
		if !ok {
			return fmt.Errorf("route.echo not in hail_config")
		}
		var cfg events.RouteConfig
		if err := json.Unmarshal([]byte(v), &cfg); err != nil {
			return err
		}
		if cfg.Strategy != "round_robin" || cfg.HashHeader != "X-User" || cfg.Weights != nil {
			return fmt.Errorf("route.echo = %s", v)
		}
		return nil
	})
	// And the page shows the route in force, still without a reload.
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#routes tr[data-service="echo"]`))); err != nil {
		t.Fatalf("route not shown: %v", err)
	}

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG, below that JPEG
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(t.TempDir(), "admin.png")
	if *updateScreenshot {
		path = filepath.Join("..", "..", "docs", "admin.png")
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// The first answer holds the first 30 services, the page fetches the rest
// at once; a change then replaces only what differs: an unchanged row is
// the same element after it, a changed one shows the change, and an
// opened timeline stays open.
func TestPageUpdatesInPlace(t *testing.T) {
	e := regiontest.NewConsole(t)
	ctx := browser(t)
	conn := e.Connect()
	var first *fakeinst.Instance
	for i := range 32 {
		inst := fakeinst.Start(t, e.URL, fakeinst.Options{Service: fmt.Sprintf("svc-%02d", i), Conn: conn})
		if i == 0 {
			first = inst
		}
	}
	if err := chromedp.Do(ctx,
		chromedp.Navigate(e.Srv.URL+"/?service=svc-00"),
		chromedp.WaitVisible(chromedp.CSS(`#live.on`)),
		chromedp.WaitVisible(chromedp.CSS(`#services tr[data-service="svc-31"]`)),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#services tr[data-service="svc-05"]').__kept = true; undefined`),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr.instance[data-id=%q] button.timeline`, first.ID))),
		chromedp.WaitVisible(chromedp.CSS(`tr.timeline-row`)),
	); err != nil {
		t.Fatalf("the page did not show all 32 services, or a timeline: %v", err)
	}
	first.Silence()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#services tr[data-service="svc-00"] .badge.critical`))); err != nil {
		t.Fatalf("the page did not show svc-00's critical instance: %v", err)
	}
	kept, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('#services tr[data-service="svc-05"]').__kept === true`))
	if err != nil {
		t.Fatal(err)
	}
	if !kept {
		t.Error("an unchanged row was replaced by the update")
	}
	open, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector("tr.timeline-row") !== null`))
	if err != nil || !open {
		t.Errorf("the opened timeline closed on an update (%v)", err)
	}
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`performance.getEntriesByName("hail:update").length`))
	if err != nil || n == 0 {
		t.Errorf("no update timed as hail:update (%d, %v)", n, err)
	}
}
