package embedded_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/hailsd/hail/bus/embedded"
)

// ProfPort serves nats-server's profiles on the client host; a port the
// server cannot have fails the start, which nats-server alone would only
// log.
func TestProfPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free, err := embedded.FreeLoopbackPorts(1)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		port    int
		serves  bool
		wantErr string
	}{
		{"off", 0, false, ""},
		{"a free port", free[0], true, ""},
		{"any free port", -1, true, ""},
		{"a taken port", taken.Addr().(*net.TCPAddr).Port, false, "profiler"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := embedded.StartServer(embedded.ServerOptions{Name: "prof", Port: -1, StoreDir: t.TempDir(), ProfPort: tt.port})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					if err == nil {
						s.Shutdown()
					}
					t.Fatalf("StartServer = %v, want an error naming the %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
			addr := s.ProfilerAddr()
			if !tt.serves {
				if addr != nil {
					t.Fatalf("profiler on %s, want none", addr)
				}
				return
			}
			if addr == nil || !addr.IP.Equal(net.IPv4(127, 0, 0, 1)) || (tt.port > 0 && addr.Port != tt.port) {
				t.Fatalf("profiler on %v, want 127.0.0.1 (the client host), port %d", addr, tt.port)
			}
			resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/", addr))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || !strings.Contains(string(body), "goroutine") {
				t.Errorf("GET /debug/pprof/ = %d %.200q", resp.StatusCode, body)
			}
		})
	}
}
