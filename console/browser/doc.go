// Package browser holds the console's test in headless Chromium. It is a
// module of its own so that the browser driver (chromedp) stays out of
// hail's go.mod, and so out of the module graph of every service that
// imports hail's SDK. .ci/run runs it:
//
//	go -C console/browser test ./...
package browser
