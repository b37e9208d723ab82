package bench

import (
	"strings"
	"testing"
	"time"
)

// BenchmarkRequest is the go test -bench entry of the side-by-side
// measurement: b.N requests, 32 in flight, per path. Besides ns/op it
// reports req/s, p50 and p99.
func BenchmarkRequest(b *testing.B) {
	s, err := Start(b.Context(), Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for _, mode := range Modes {
		b.Run(mode, func(b *testing.B) {
			if _, err := s.Measure(b.Context(), mode, 200*time.Millisecond, 0); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			r, err := s.Measure(b.Context(), mode, 0, b.N)
			if err != nil {
				b.Fatal(err)
			}
			if r.Errors > 0 {
				b.Errorf("%d requests failed", r.Errors)
			}
			b.ReportMetric(r.Throughput, "req/s")
			b.ReportMetric(float64(r.P50.Microseconds()), "p50-µs")
			b.ReportMetric(float64(r.P99.Microseconds()), "p99-µs")
		})
	}
}

// TestRunShort checks that every path answers without error; the figures
// belong to the benchmark.
// With Secure, the routed path of a secured region (TLS, a user per role)
// answers too.
func TestRunShort(t *testing.T) {
	cfg := Config{Duration: 200 * time.Millisecond, Warmup: 50 * time.Millisecond, Concurrency: 4, Secure: true}
	results, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(Modes)+1 || results[len(results)-1].Mode != ModeRouter+SecureSuffix {
		t.Fatalf("results %+v, want every mode and the secured router", results)
	}
	for _, r := range results {
		if r.Requests == 0 || r.Errors != 0 {
			t.Errorf("%s: %d requests, %d errors", r.Mode, r.Requests, r.Errors)
		}
	}
}

// BenchmarkHTTPPaths is the README's HTTP table: a tuned reverse proxy,
// the ingress through an agent's bridge and the ingress to an SDK instance,
// side by side in one run (5 turns of 2 s per path), whatever b.N is: run
// it with -benchtime 1x. It logs the table and reports each path's req/s,
// ratio to the proxy and p99.
func BenchmarkHTTPPaths(b *testing.B) {
	cfg := Config{Duration: 10 * time.Second, Rounds: 5, Warmup: time.Second}
	var results []Result
	for b.Loop() {
		var err error
		if results, err = RunHTTP(b.Context(), cfg); err != nil {
			b.Fatal(err)
		}
	}
	var sb strings.Builder
	WriteHTTP(&sb, cfg, results)
	b.Log("\n" + sb.String())
	names := map[string]string{PathProxy: "proxy", PathBridge: "bridge", PathSDK: "sdk"}
	for _, r := range results {
		if r.Errors > 0 {
			b.Errorf("%s: %d requests failed", r.Mode, r.Errors)
		}
		b.ReportMetric(r.Throughput, names[r.Mode]+"-req/s")
		b.ReportMetric(r.Throughput/results[0].Throughput, names[r.Mode]+"-x")
		b.ReportMetric(float64(r.P99.Microseconds()), names[r.Mode]+"-p99-µs")
	}
}

// Every HTTP path answers without error; the figures belong to the
// benchmark.
func TestRunHTTPShort(t *testing.T) {
	results, err := RunHTTP(t.Context(), Config{Duration: 200 * time.Millisecond, Warmup: 50 * time.Millisecond, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(HTTPPaths) {
		t.Fatalf("results %+v, want every path", results)
	}
	for _, r := range results {
		if r.Requests == 0 || r.Errors != 0 {
			t.Errorf("%s: %d requests, %d errors", r.Mode, r.Requests, r.Errors)
		}
	}
}
