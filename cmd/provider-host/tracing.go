package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// tracingRequested reports whether the standard OpenTelemetry environment asks for traces: an OTLP
// endpoint is set and OTEL_TRACES_EXPORTER is not "none".
func tracingRequested() bool {
	if v := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); v == "none" {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// newTracerProvider exports spans over OTLP/gRPC as the standard environment says (endpoint, TLS,
// headers, timeouts: OTEL_EXPORTER_OTLP_*; sampling: OTEL_TRACES_SAMPLER; batching: OTEL_BSP_*), as
// the service named service unless OTEL_SERVICE_NAME says otherwise. It returns nil when tracing is
// not requested; a request it cannot honour (another exporter or protocol) is an error, not a
// silent lack of traces.
func newTracerProvider(ctx context.Context, service string, attrs ...attribute.KeyValue) (*sdktrace.TracerProvider, error) {
	if !tracingRequested() {
		return nil, nil
	}
	if v := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); v != "" && v != "otlp" {
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%s: only otlp (over gRPC) is supported", v)
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := strings.TrimSpace(os.Getenv(name)); v != "" {
			if v != "grpc" {
				return nil, fmt.Errorf("%s=%s: only grpc is supported", name, v)
			}
			break
		}
	}
	exp, err := otlptracegrpc.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(append(attrs, semconv.ServiceName(service), semconv.ServiceVersion(version))...),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}
