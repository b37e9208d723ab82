package discovery_test

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"

	"github.com/VictoriaMetrics/metrics"
)

func newMetricsSet() *metrics.Set { return metrics.NewSet() }

func metricsText(s *metrics.Set) string {
	var b bytes.Buffer
	s.WritePrometheus(&b)
	return b.String()
}

// counter reads one unlabelled series from the set.
func counter(s *metrics.Set, name string) float64 {
	sc := bufio.NewScanner(strings.NewReader(metricsText(s)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}
