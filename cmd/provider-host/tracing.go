package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/keyfort/keyfort/internal/redact"
)

// tracingRequested reports whether the standard OpenTelemetry environment asks for traces: an OTLP
// endpoint is set and OTEL_TRACES_EXPORTER is not "none".
func tracingRequested() bool {
	if v := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); v == "none" {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// tracingProtocol is the OTLP protocol the environment asks for (grpc by default, or
// http/protobuf), or an error naming the variable that asks for something else.
func tracingProtocol() (string, error) {
	if v := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); v != "" && v != "otlp" {
		return "", fmt.Errorf("OTEL_TRACES_EXPORTER=%s: only otlp is supported", v)
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := strings.TrimSpace(os.Getenv(name)); v != "" {
			if v != "grpc" && v != "http/protobuf" {
				return "", fmt.Errorf("%s=%s: only grpc and http/protobuf are supported", name, v)
			}
			return v, nil
		}
	}
	return "grpc", nil // Keyfort's default: grpc is in the binary already
}

// tracingEndpoint is the collector the environment names for traces.
func tracingEndpoint() string {
	return cmp.Or(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
}

// newTracerProvider exports spans over OTLP (gRPC, or HTTP with protobuf when
// OTEL_EXPORTER_OTLP_PROTOCOL says http/protobuf) as the standard environment says (endpoint, TLS,
// headers, timeouts: OTEL_EXPORTER_OTLP_*; sampling: OTEL_TRACES_SAMPLER; batching: OTEL_BSP_*), as
// the service named service unless OTEL_SERVICE_NAME says otherwise. It returns nil when tracing is
// not requested; a request it cannot honour (another exporter or protocol) is an error, not a
// silent lack of traces.
//
// The SDK's own errors (a collector that cannot be reached, spans dropped) go to log as warnings,
// at most one a minute with the count of those held back; log nil: slog.Default() at the time.
func newTracerProvider(ctx context.Context, log *slog.Logger, service string, attrs ...attribute.KeyValue) (*sdktrace.TracerProvider, error) {
	if !tracingRequested() {
		return nil, nil
	}
	otel.SetErrorHandler(&tracingErrors{log: log, every: time.Minute})
	protocol, err := tracingProtocol()
	if err != nil {
		return nil, err
	}
	var exp sdktrace.SpanExporter
	if protocol == "grpc" {
		exp, err = otlptracegrpc.New(ctx)
	} else {
		exp, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter (%s): %w", protocol, err)
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

// tracingErrors routes the OpenTelemetry SDK's errors into the process's structured log, at most one
// line per interval: an unreachable collector fails every batch, and its errors must not drown the
// log (they would otherwise go to the standard logger as unstructured lines).
type tracingErrors struct {
	log   *slog.Logger
	every time.Duration

	mu   sync.Mutex
	last time.Time
	held int
}

func (h *tracingErrors) Handle(err error) {
	h.mu.Lock()
	now := time.Now()
	if !h.last.IsZero() && now.Sub(h.last) < h.every {
		h.held++
		h.mu.Unlock()
		return
	}
	held := h.held
	h.last, h.held = now, 0
	h.mu.Unlock()
	log := h.log
	if log == nil {
		log = slog.Default()
	}
	// The exporter's messages may quote its endpoint, whose user part may hold credentials (net/http
	// masks a password there; other paths may not).
	log.Warn("keyfort: tracing error; spans may be lost", slog.String("error", redact.Userinfo(err.Error())),
		slog.Int("errors_held_back", held), slog.Duration("next_report_in", h.every))
}
