package provider

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyfort/keyfort/internal/promreg"
)

// Metrics holds the Prometheus collectors of every [Client] that shares it. Labels carry the provider
// instance's configured name, the method, the error kind and the cache result: never a location or a
// value. Metrics is safe for concurrent use.
type Metrics struct {
	calls   *prometheus.CounterVec
	errors  *prometheus.CounterVec
	latency *prometheus.HistogramVec
	cache   *prometheus.CounterVec
	restart *prometheus.CounterVec
	changes *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them with reg when reg is not nil. Registering twice
// with the same registry reuses the collectors already registered.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "keyfort", Subsystem: "provider", Name: "calls_total",
			Help: "Calls that reached the provider (cache misses and pass-through calls), by method.",
		}, []string{"provider", "method"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "keyfort", Subsystem: "provider", Name: "errors_total",
			Help: "Provider calls that failed, by method and error kind.",
		}, []string{"provider", "method", "kind"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "keyfort", Subsystem: "provider", Name: "call_duration_seconds",
			Help:    "Latency of calls that reached the provider.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"provider", "method"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "keyfort", Subsystem: "provider", Name: "cache_requests_total",
			Help: "Material cache lookups by result: hit, miss, stale (served past TTL while the backend was unavailable), refresh (early background refresh started).",
		}, []string{"provider", "material", "result"}),
		restart: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "keyfort", Subsystem: "provider", Name: "restarts_total",
			Help: "Plugin processes replaced, by reason: exited (it died), connection (its connection broke), unresponsive (it answered no liveness probe).",
		}, []string{"provider", "reason"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "keyfort", Subsystem: "provider", Name: "changes_total",
			Help: "Changes a provider with the Watcher capability reported (each makes the changed material, or all of it, refetch at once).",
		}, []string{"provider"}),
	}
	if reg != nil {
		m.calls = register(reg, m.calls)
		m.errors = register(reg, m.errors)
		m.latency = register(reg, m.latency)
		m.cache = register(reg, m.cache)
		m.restart = register(reg, m.restart)
		m.changes = register(reg, m.changes)
	}
	return m, nil
}

// register registers c with reg, sharing an equal collector registered before; NewMetrics reports
// no other registration error (a conflicting collector leaves c unregistered).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	c, _ = promreg.Register(reg, c)
	return c
}

// Collectors returns every collector, for registering with a registry of the caller's choosing.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.calls, m.errors, m.latency, m.cache, m.restart, m.changes}
}

// Restarted counts a plugin process of provider instance providerName replaced for reason (exited,
// connection, unresponsive). The plugin transport reports it through plugin.Config.OnRestart.
func (m *Metrics) Restarted(providerName, reason string) {
	if m != nil {
		m.restart.WithLabelValues(providerName, reason).Inc()
	}
}

// cacheCounters are resolved once per client and material so that a cache hit costs one atomic add.
type cacheCounters struct {
	hit, miss, stale, refresh prometheus.Counter
}

func (m *Metrics) cacheCounters(providerName, material string) cacheCounters {
	return cacheCounters{
		hit:     m.cache.WithLabelValues(providerName, material, "hit"),
		miss:    m.cache.WithLabelValues(providerName, material, "miss"),
		stale:   m.cache.WithLabelValues(providerName, material, "stale"),
		refresh: m.cache.WithLabelValues(providerName, material, "refresh"),
	}
}
