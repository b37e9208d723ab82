package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
)

func TestRunPrintsTable(t *testing.T) {
	var out bytes.Buffer
	args := []string{"--duration", "200ms", "--warmup", "50ms", "--concurrency", "4", "--rounds", "2"}
	if err := run(context.Background(), args, func(string) string { return "" }, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| plain | ", "| router | ", "| client | ", "× plain", "CPU/req"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestConfigErrorsNameField(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--concurrency", "0"}, "concurrency"},
		{[]string{"--duration", "-1s"}, "duration"},
		{[]string{"--nats-url", "http://x"}, "nats.url"},
	} {
		if err := run(context.Background(), tt.args, func(string) string { return "" }, io.Discard); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run(%v) = %v, want an error naming %s", tt.args, err, tt.want)
		}
	}
}
