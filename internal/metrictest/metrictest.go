package metrictest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Counter sums the counters (or gauges) named name in reg whose labels include every pair of labels
// (all of them when labels is empty); 0 when there is none.
func Counter(tb testing.TB, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var n float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			match := true
			for k, v := range labels {
				if have[k] != v {
					match = false
					break
				}
			}
			if match {
				n += m.GetCounter().GetValue() + m.GetGauge().GetValue() // each nil-safe: one is 0
			}
		}
	}
	return n
}
