package discovery_test

import (
	"bytes"

	"github.com/VictoriaMetrics/metrics"
)

func newMetricsSet() *metrics.Set { return metrics.NewSet() }

func metricsText(s *metrics.Set) string {
	var b bytes.Buffer
	s.WritePrometheus(&b)
	return b.String()
}
