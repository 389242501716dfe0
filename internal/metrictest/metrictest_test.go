package metrictest_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyfort/keyfort/internal/metrictest"
)

func TestCounter(t *testing.T) {
	reg := prometheus.NewRegistry()
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "calls_total", Help: "h"}, []string{"method", "outcome"})
	reg.MustRegister(v)
	v.WithLabelValues("start", "ok").Add(2)
	v.WithLabelValues("start", "refused").Add(3)
	v.WithLabelValues("end", "ok").Add(5)
	for _, tc := range []struct {
		labels map[string]string
		want   float64
	}{
		{nil, 10},
		{map[string]string{"method": "start"}, 5},
		{map[string]string{"method": "start", "outcome": "ok"}, 2},
		{map[string]string{"method": "none"}, 0},
	} {
		if got := metrictest.Counter(t, reg, "calls_total", tc.labels); got != tc.want {
			t.Errorf("%v: got %v, want %v", tc.labels, got, tc.want)
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "up", Help: "h"})
	reg.MustRegister(g)
	g.Set(1)
	if got := metrictest.Counter(t, reg, "up", nil); got != 1 {
		t.Errorf("a gauge: got %v, want 1", got)
	}
	if got := metrictest.Counter(t, reg, "absent_total", nil); got != 0 {
		t.Errorf("an absent counter: %v", got)
	}
}
