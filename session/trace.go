package session

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// TracerName is the instrumentation scope of the spans a Manager and a Cache make.
const TracerName = "github.com/keyfort/keyfort/session"

// SpanPrefix starts the name of every span a Manager or a Cache makes: "keyfort.session.StartSession",
// "keyfort.session.create" (a Cache miss), "keyfort.session.credentials" (a session's first use of a
// role).
const SpanPrefix = "keyfort.session."

// Attribute keys of the session library's spans. No token, subject or credential reaches a span: a
// span names the identity provider, the session (the id audit records carry) and the outcome.
const (
	AttrIdP     = attribute.Key("keyfort.session.idp")
	AttrSession = attribute.Key("keyfort.session.id")
	AttrOutcome = attribute.Key("keyfort.session.outcome")
	AttrRole    = attribute.Key("keyfort.session.role")
)

// Outcome names what an error of this package means, for audit records, metrics and spans:
// ok, refresh_reuse, client_mismatch, unavailable (the store, the provider), invalid_argument (an
// unknown identity provider) or unauthenticated.
func Outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrRefreshReuse):
		return "refresh_reuse"
	case errors.Is(err, ErrClientMismatch):
		return "client_mismatch"
	case errors.Is(err, ErrStoreUnavailable):
		return "unavailable"
	case errors.Is(err, ErrUnknownIdP):
		return "invalid_argument"
	case errors.Is(err, ErrUnauthenticated):
		return "unauthenticated"
	default:
		return "unavailable"
	}
}

func tracerOf(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		return nil
	}
	return tp.Tracer(TracerName)
}

// startSpan starts a span named after op when tracer is set; the span is nil otherwise.
func startSpan(ctx context.Context, tracer trace.Tracer, op string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if tracer == nil {
		return ctx, nil
	}
	return tracer.Start(ctx, SpanPrefix+op, trace.WithAttributes(attrs...))
}

// endSpan records err's outcome (never its message: it may quote a claim) and ends span.
func endSpan(span trace.Span, err error, attrs ...attribute.KeyValue) {
	if span == nil {
		return
	}
	out := Outcome(err)
	span.SetAttributes(append(attrs, AttrOutcome.String(out))...)
	if err != nil {
		span.SetStatus(codes.Error, out)
	}
	span.End()
}
