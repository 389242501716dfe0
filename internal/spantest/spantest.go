package spantest

import (
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Recorder is a tracer provider that keeps every span it ends in memory.
type Recorder struct {
	*sdktrace.TracerProvider
	rec *tracetest.SpanRecorder
}

// New returns a Recorder that samples every span; it is shut down when the test ends.
func New(tb testing.TB) *Recorder {
	tb.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	tb.Cleanup(func() { _ = tp.Shutdown(tb.Context()) })
	return &Recorder{TracerProvider: tp, rec: rec}
}

// Global makes a new Recorder the process's global TracerProvider until the test ends, for code
// that traces through otel.GetTracerProvider (the backend SDKs, the adapters' HTTP clients); a test
// that uses it must not run in parallel with another that does.
func Global(tb testing.TB) *Recorder {
	tb.Helper()
	r := New(tb)
	otel.SetTracerProvider(r)
	tb.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
	return r
}

// Children returns the ended spans whose parent is parent.
func (r *Recorder) Children(parent trace.Span) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range r.rec.Ended() {
		if s.Parent().SpanID() == parent.SpanContext().SpanID() {
			out = append(out, s)
		}
	}
	return out
}

// Ended returns the spans ended so far, in the order they ended.
func (r *Recorder) Ended() []sdktrace.ReadOnlySpan { return r.rec.Ended() }

// Named returns the ended spans called name.
func (r *Recorder) Named(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range r.rec.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// Attr returns the value of attribute key on s as a string ("" when s lacks it).
func Attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// Text is everything a span exports as text: name, status, attributes, events and their attributes.
func Text(s sdktrace.ReadOnlySpan) string {
	var b strings.Builder
	b.WriteString(s.Name())
	b.WriteString("\n" + s.Status().Description)
	for _, kv := range s.Attributes() {
		b.WriteString("\n" + string(kv.Key) + "=" + kv.Value.String())
	}
	for _, ev := range s.Events() {
		b.WriteString("\n" + ev.Name)
		for _, kv := range ev.Attributes {
			b.WriteString("\n" + string(kv.Key) + "=" + kv.Value.String())
		}
	}
	return b.String()
}

// NoSecret fails the test when any ended span carries one of secrets anywhere in its text.
func (r *Recorder) NoSecret(tb testing.TB, secrets ...string) {
	tb.Helper()
	for _, s := range r.rec.Ended() {
		text := Text(s)
		for _, secret := range secrets {
			if secret != "" && strings.Contains(text, secret) {
				tb.Errorf("span %q carries a secret value", s.Name())
			}
		}
	}
}
