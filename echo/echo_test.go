package echo

import (
	"context"
	"errors"
	"testing"

	"github.com/hailsd/hail/instance"
	"github.com/nats-io/nats.go"
)

func TestSlow(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name     string
		ctx      context.Context
		payload  string
		wantCode int // 0: a normal reply echoing the payload
	}{
		{"zero", context.Background(), "0", 0},
		{"some", context.Background(), " 5 ", 0},
		{"not a number", context.Background(), "soon", 400},
		{"negative", context.Background(), "-1", 400},
		{"over a minute", context.Background(), "60001", 400},
		{"shutting down", cancelled, "60000", 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Slow(tt.ctx, &nats.Msg{Data: []byte(tt.payload)})
			var herr *instance.Error
			switch {
			case tt.wantCode == 0 && (err != nil || string(got) != tt.payload):
				t.Errorf("got %q, %v", got, err)
			case tt.wantCode != 0 && (!errors.As(err, &herr) || herr.Code != tt.wantCode):
				t.Errorf("got %v, want code %d", err, tt.wantCode)
			}
		})
	}
}
