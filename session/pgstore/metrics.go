package pgstore

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyfort/keyfort/internal/storemetrics"
)

// tracer counts the store's statements by their first word (begin, select, update, commit …) and
// times each round trip, into the metrics every shared store exports.
type tracer struct{ m *storemetrics.Collectors }

type traceStart struct{}

func (t tracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, traceStart{}, time.Now())
}

func (t tracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	// The statement's name comes from the command tag PostgreSQL answers with ("UPDATE 1",
	// "BEGIN"); a failed statement has none, and is counted as "failed".
	name := "failed"
	if tag := data.CommandTag.String(); tag != "" {
		name, _, _ = strings.Cut(tag, " ")
		name = strings.ToLower(name)
	}
	if start, ok := ctx.Value(traceStart{}).(time.Time); ok {
		t.m.Latency.Observe(time.Since(start).Seconds())
	}
	t.m.Commands.WithLabelValues(name).Inc()
	if data.Err != nil && !errors.Is(data.Err, pgx.ErrNoRows) {
		t.m.Errors.WithLabelValues(name).Inc()
	}
}
