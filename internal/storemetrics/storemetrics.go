package storemetrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyfort/keyfort/internal/promreg"
)

// Collectors are a store's metrics.
type Collectors struct {
	Commands    *prometheus.CounterVec // keyfort_session_store_commands_total{command}
	Errors      *prometheus.CounterVec // keyfort_session_store_command_errors_total{command}
	Latency     prometheus.Histogram   // keyfort_session_store_round_trip_seconds
	FeedDropped prometheus.Counter     // keyfort_session_store_feed_dropped_total
	// HashKeyMismatch is keyfort_session_store_hash_key_mismatch: 1 while the shared store's
	// token-hash key is not this process's (replicas disagree on tombstones), else 0.
	HashKeyMismatch prometheus.Gauge
}

// New makes the collectors and registers them with reg, reusing those registered before.
func New(reg prometheus.Registerer) (*Collectors, error) {
	c := &Collectors{
		Commands: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keyfort", Subsystem: "session_store",
			Name: "commands_total", Help: "Commands sent by the session store (Redis commands; PostgreSQL statements by their first word), by command."}, []string{"command"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keyfort", Subsystem: "session_store",
			Name: "command_errors_total", Help: "Commands of the session store that failed (a missing key or row is not a failure), by command."}, []string{"command"}),
		Latency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "keyfort", Subsystem: "session_store",
			Name: "round_trip_seconds", Help: "Latency of the session store's round trips (a command, or a pipeline of several).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}}),
		FeedDropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "keyfort", Subsystem: "session_store",
			Name: "feed_dropped_total", Help: "Revocation feed events dropped because a subscriber fell a whole queue behind; it was sent a Resync instead."}),
		HashKeyMismatch: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "keyfort", Subsystem: "session_store",
			Name: "hash_key_mismatch", Help: "1 while the shared store's token-hash key differs from the one this process hashes tokens with (replicas then do not see each other's logouts: restart them), else 0."}),
	}
	var err error
	if c.Commands, err = register(reg, c.Commands); err != nil {
		return nil, err
	}
	if c.Errors, err = register(reg, c.Errors); err != nil {
		return nil, err
	}
	if c.Latency, err = register(reg, c.Latency); err != nil {
		return nil, err
	}
	if c.FeedDropped, err = register(reg, c.FeedDropped); err != nil {
		return nil, err
	}
	if c.HashKeyMismatch, err = register(reg, c.HashKeyMismatch); err != nil {
		return nil, err
	}
	return c, nil
}

// register registers c, or returns the equal collector registered before it.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	return promreg.Register(reg, c)
}
