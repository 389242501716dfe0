package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/redis/go-redis/v9"
)

// RouteClientLogs sends go-redis's own log lines (reconnections, Sentinel failovers, dropped pub/sub
// messages), which it otherwise prints to standard error, to log at Info with component=redis. It
// sets go-redis's process-wide logger: call it once, from main.
func RouteClientLogs(log *slog.Logger) {
	redis.SetLogger(slogPrinter{log})
}

type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(ctx context.Context, format string, v ...any) {
	p.log.LogAttrs(ctx, slog.LevelInfo, strings.TrimSpace(fmt.Sprintf(format, v...)), slog.String("component", "redis"))
}
