package browser_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"

	"github.com/hailsd/hail/console"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/internal/fakeinst"
	"github.com/hailsd/hail/internal/regiontest"
	"github.com/hailsd/hail/router"
)

// Golden metrics and health strips drawn from real traffic through a
// router: the sparklines move, a killed instance's row and strip turn red
// within a second of its health event, and the screenshot in docs/ comes
// from this page at 1280x900.
func TestGoldenMetricsInBrowser(t *testing.T) {
	r := regiontest.New(t)
	r.StartNode(discovery.Config{Timing: discovery.Timing{Heartbeat: discovery.Heartbeat{Interval: 200 * time.Millisecond, Timeout: 100 * time.Millisecond}}})
	r.StartRouter(router.Config{StatsInterval: 200 * time.Millisecond})
	var insts []*fakeinst.Instance
	for i := range 3 {
		insts = append(insts, fakeinst.Start(t, r.URL, fakeinst.Options{Service: "echo", Weight: 100 * (i + 1), Delay: time.Duration(i+1) * time.Millisecond}))
	}
	_, srv := r.StartConsole(console.RegionConfig{TrafficStep: 200 * time.Millisecond})
	ctx := browser(t)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, _ = r.NC.Request("hail.route.echo.say", []byte("hi"), time.Second)
		}
	}()
	t.Cleanup(func() { close(stop); <-done })

	row := func(id string) string { return fmt.Sprintf(`tr.instance[data-id=%q]`, id) }
	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/?service=echo"),
		chromedp.WaitVisible(chromedp.CSS(`#live.on`)),
		chromedp.WaitVisible(chromedp.CSS(`#services tr[data-service="echo"] svg.spark polyline`)),
		chromedp.WaitVisible(chromedp.CSS(row(insts[0].ID)+` svg.spark polyline`)),
		chromedp.WaitVisible(chromedp.CSS(row(insts[0].ID)+` svg.strip rect[data-status="passing"]`)),
	); err != nil {
		t.Fatalf("no sparklines and strips from the traffic: %v", err)
	}
	// The sparkline moves: its points change as traffic comes in.
	first, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`#services tr[data-service="echo"] svg.spark polyline`), "points"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		now, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`#services tr[data-service="echo"] svg.spark polyline`), "points"))
		if err == nil && now != first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sparkline did not move in 5 s of traffic")
		}
		time.Sleep(50 * time.Millisecond) // polling the page, with a deadline
	}

	// Kill one instance: its health event, then the page, within a second.
	critical := make(chan time.Time, 1)
	sub, err := r.NC.Subscribe("hail.health.echo."+insts[2].ID, func(m *nats.Msg) {
		var ev events.HealthEvent
		if json.Unmarshal(m.Data, &ev) == nil && ev.Status == events.Critical {
			select {
			case critical <- time.Now():
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	insts[2].Kill()
	var at time.Time
	select {
	case at = <-critical:
	case <-time.After(5 * time.Second):
		t.Fatal("no critical event for the killed instance")
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(row(insts[2].ID)+`[data-status="critical"] svg.strip rect[data-status="critical"]`))); err != nil {
		t.Fatalf("the killed instance's strip did not turn red: %v", err)
	}
	if d := time.Since(at); d > time.Second {
		t.Errorf("the page showed the change %v after the event; want within a second", d)
	}
	t.Logf("health change on the page %v after its event", time.Since(at).Round(time.Millisecond))

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(t.TempDir(), "console.png")
	if *updateScreenshot {
		path = filepath.Join("..", "..", "docs", "console.png")
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}
