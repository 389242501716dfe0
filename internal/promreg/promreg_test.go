package promreg_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyfort/keyfort/internal/promreg"
)

// TestRegisterShares: the second registration of an equal collector returns the first, so both
// count into one series; a conflicting one is an error.
func TestRegisterShares(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "keyfort_test_total", Help: "test"}
	a, err := promreg.Register(reg, prometheus.NewCounter(opts))
	if err != nil {
		t.Fatal(err)
	}
	b, err := promreg.Register(reg, prometheus.NewCounter(opts))
	if err != nil || b != a {
		t.Fatalf("second registration: %v, shared %v", err, b == a)
	}
	if _, err := promreg.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "keyfort_test_total", Help: "other"})); err == nil {
		t.Error("a conflicting collector was accepted")
	}
}
