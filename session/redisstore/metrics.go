package redisstore

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/keyfort/keyfort/internal/storemetrics"
)

// metricsHook counts the store's Redis commands and times its round trips (a command, or a
// pipeline or transaction of several, is one).
type metricsHook struct {
	commands *prometheus.CounterVec
	errors   *prometheus.CounterVec
	latency  prometheus.Histogram
}

func newMetricsHook(c *storemetrics.Collectors) *metricsHook {
	return &metricsHook{commands: c.Commands, errors: c.Errors, latency: c.Latency}
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
