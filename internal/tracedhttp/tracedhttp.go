package tracedhttp

import (
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace"
)

// Transport returns base with otelhttp client spans for the requests whose context carries a
// valid span (they take that span's tracer provider); the others go straight to base.
func Transport(base http.RoundTripper) http.RoundTripper {
	return transport{base: base, traced: otelhttp.NewTransport(base)}
}

type transport struct {
	base, traced http.RoundTripper
}

func (t transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if trace.SpanContextFromContext(req.Context()).IsValid() {
		return t.traced.RoundTrip(req)
	}
	return t.base.RoundTrip(req)
}

// RoundTripperFunc adapts a function (an HTTP client's Do) to http.RoundTripper.
type RoundTripperFunc func(*http.Request) (*http.Response, error)

// RoundTrip calls f.
func (f RoundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
