package provider_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/keyfort/keyfort/internal/spantest"
	"github.com/keyfort/keyfort/provider"
)

// TestClientSpans: a call that reaches the provider makes one client span under the caller's, named
// after the method, with the provider, method and location as attributes; a cache hit makes none; a
// failure carries its kind and an error status; serving stale material is an event on the caller's
// span; no secret value reaches a span.
func TestClientSpans(t *testing.T) {
	rec := spantest.New(t)
	drv := newFaulty(t)
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	c := newClient(t, drv, provider.ClientConfig{Name: "mem", CacheTTL: time.Minute, TracerProvider: rec, Now: clk.Now})
	ctx, parent := rec.Tracer("test").Start(context.Background(), "request")

	for range 3 {
		if _, err := c.SigningKeys(ctx, "signing"); err != nil {
			t.Fatal(err)
		}
	}
	sec, err := c.Secret(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	spans := rec.Named("keyfort.provider.SigningKeys")
	if len(spans) != 1 {
		t.Fatalf("SigningKeys spans: got %d, want 1 (the miss; hits make none)", len(spans))
	}
	s := spans[0]
	if s.Parent().SpanID() != parent.SpanContext().SpanID() || s.SpanKind() != trace.SpanKindClient {
		t.Errorf("span: parent %v kind %v, want the caller's span and a client span", s.Parent().SpanID(), s.SpanKind())
	}
	for key, want := range map[string]string{"keyfort.provider.name": "mem", "keyfort.provider.operation": "SigningKeys",
		"keyfort.provider.location": "signing"} {
		if got := spantest.Attr(s, key); got != want {
			t.Errorf("attribute %s: got %q, want %q", key, got, want)
		}
	}
	if len(rec.Named("keyfort.provider.Secret")) != 1 {
		t.Error("no span for the Secret miss")
	}

	drv.set(unavailable, nil)
	clk.Advance(2 * time.Minute) // past the TTL, within the stale budget
	if _, err := c.Secret(ctx, "db"); err != nil {
		t.Fatalf("stale: %v", err)
	}
	failed := rec.Named("keyfort.provider.Secret")
	if len(failed) != 2 {
		t.Fatalf("Secret spans: got %d, want 2", len(failed))
	}
	if f := failed[1]; f.Status().Code != codes.Error || spantest.Attr(f, "keyfort.error.kind") != "unavailable" {
		t.Errorf("failed call: status %v, kind %q; want an error status and kind unavailable", f.Status(), spantest.Attr(f, "keyfort.error.kind"))
	}
	parent.End()
	req := rec.Named("request")
	stale := false
	for _, ev := range req[0].Events() {
		stale = stale || ev.Name == "keyfort.provider.stale_served"
	}
	if !stale {
		t.Error("serving stale material left no event on the caller's span")
	}
	rec.NoSecret(t, string(sec.Value.Reveal()))
}

// TestClientWithoutTracer: without a TracerProvider the client makes no span, even under a caller's
// and with a global tracer provider set: a library does not trace behind its user's back.
func TestClientWithoutTracer(t *testing.T) {
	rec := spantest.New(t)
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(rec)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	c := newClient(t, newFaulty(t), provider.ClientConfig{})
	ctx, parent := rec.Tracer("test").Start(context.Background(), "request")
	if _, err := c.Secret(ctx, "missing"); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	parent.End()
	if n := len(rec.Ended()); n != 1 {
		t.Errorf("spans: got %d, want only the caller's", n)
	}
}
