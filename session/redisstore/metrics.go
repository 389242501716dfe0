package redisstore

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// metricsHook counts the store's Redis commands and times its round trips (a command, or a
// pipeline or transaction of several, is one).
type metricsHook struct {
	commands *prometheus.CounterVec
	errors   *prometheus.CounterVec
	latency  prometheus.Histogram
}

func newMetricsHook(reg prometheus.Registerer) (*metricsHook, error) {
	h := &metricsHook{
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keyfort", Subsystem: "session_store",
			Name: "commands_total", Help: "Redis commands sent by the session store, by command."}, []string{"command"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keyfort", Subsystem: "session_store",
			Name: "command_errors_total", Help: "Redis commands of the session store that failed (a missing key is not a failure), by command."}, []string{"command"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "keyfort", Subsystem: "session_store",
			Name: "round_trip_seconds", Help: "Latency of the session store's round trips to Redis (a command, or a pipeline of several).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}}),
	}
	// A second Store on one registry (two stores in one process) shares the first one's collectors.
	var err error
	if h.commands, err = register(reg, h.commands); err != nil {
		return nil, err
	}
	if h.errors, err = register(reg, h.errors); err != nil {
		return nil, err
	}
	if h.latency, err = register(reg, h.latency); err != nil {
		return nil, err
	}
	return h, nil
}

// register registers c, or returns the equal collector registered before it.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

func (h *metricsHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (h *metricsHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		if name, ok := counted(cmd); ok {
			h.latency.Observe(time.Since(start).Seconds())
			h.count(name, err)
		}
		return err
	}
}

func (h *metricsHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		observed := false
		for _, cmd := range cmds {
			name, ok := counted(cmd)
			if !ok {
				continue
			}
			if !observed {
				h.latency.Observe(time.Since(start).Seconds())
				observed = true
			}
			cerr := cmd.Err()
			if cerr == nil && len(cmds) == 1 {
				cerr = err
			}
			h.count(name, cerr)
		}
		return err
	}
}

// counted names a command the store sent; the connection handshake's (HELLO, AUTH, SELECT, CLIENT
// SETINFO, which older servers refuse and go-redis ignores) are not the store's.
func counted(cmd redis.Cmder) (string, bool) {
	name := strings.ToLower(cmd.Name())
	switch name {
	case "hello", "auth", "select", "client":
		return name, false
	}
	return name, true
}

func (h *metricsHook) count(name string, err error) {
	h.commands.WithLabelValues(name).Inc()
	if err != nil && !errors.Is(err, redis.Nil) {
		h.errors.WithLabelValues(name).Inc()
	}
}
