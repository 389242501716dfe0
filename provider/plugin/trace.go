package plugin

import (
	"context"
	"strings"

	goplugin "github.com/hashicorp/go-plugin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Trace context crosses the plugin boundary as W3C Trace Context (traceparent, tracestate) in the
// call's gRPC metadata, whatever propagator the process has set globally: a host's provider span
// becomes the parent of what the plugin does for it. Baggage does not cross: it could carry anything.
var traceContext propagation.TraceContext

// TracerName is the instrumentation scope of the spans a plugin served with [WithTracerProvider] makes.
const TracerName = "github.com/keyfort/keyfort/provider/plugin"

// SpanPrefix starts the name of the server span a plugin makes for each call from its host:
// "keyfort.plugin.SigningKeys".
const SpanPrefix = "keyfort.plugin."

// WithTracerProvider makes the plugin record a server span for each call from its host, as the child
// of the host's span for it. Without it the plugin records nothing itself, but the host's trace context
// still reaches the provider's methods in their ctx, so spans the provider makes with its own tracer
// join the host's trace.
func WithTracerProvider(tp trace.TracerProvider) ServeOption {
	return func(o *serveOptions) { o.tracer = tp.Tracer(TracerName) }
}

// mdCarrier reads and writes gRPC metadata for a propagator.
type mdCarrier metadata.MD

func (c mdCarrier) Get(key string) string {
	if v := metadata.MD(c).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}
func (c mdCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }
func (c mdCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// injectTrace adds ctx's span context to the call's outgoing metadata. A ctx without a span (no
// tracing, or a call outside any trace) costs one context lookup.
func injectTrace(ctx context.Context) context.Context {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ctx
	}
	md := metadata.MD{}
	traceContext.Inject(ctx, mdCarrier(md))
	kv := make([]string, 0, 4)
	for k, v := range md {
		for _, s := range v {
			kv = append(kv, k, s)
		}
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

func traceUnaryClient(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
	invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(injectTrace(ctx), method, req, reply, cc, opts...)
}

func traceStreamClient(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
	streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(injectTrace(ctx), desc, cc, method, opts...)
}

// traceDialOptions are the host side of the propagation.
func traceDialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithChainUnaryInterceptor(traceUnaryClient),
		grpc.WithChainStreamInterceptor(traceStreamClient)}
}

// extractTrace puts the host's span context, when the call carries one, into ctx as the remote parent.
func extractTrace(ctx context.Context) context.Context {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok || len(md.Get("traceparent")) == 0 {
		return ctx
	}
	return traceContext.Extract(ctx, mdCarrier(md))
}

// serverTracing is the plugin side: the host's span context into each call's ctx and, with a tracer,
// a server span around the call.
type serverTracing struct{ tracer trace.Tracer }

func (t serverTracing) start(ctx context.Context, fullMethod string) (context.Context, trace.Span) {
	ctx = extractTrace(ctx)
	if t.tracer == nil {
		return ctx, nil
	}
	method := fullMethod[strings.LastIndexByte(fullMethod, '/')+1:]
	return t.tracer.Start(ctx, SpanPrefix+method, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("rpc.system", "grpc"), attribute.String("rpc.method", fullMethod)))
}

func end(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		// The status message is what the host receives as the error: free of secret values.
		st := status.Convert(err)
		span.SetAttributes(attribute.String("rpc.grpc.status_code", st.Code().String()))
		span.SetStatus(codes.Error, st.Message())
	}
	span.End()
}

func (t serverTracing) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, span := t.start(ctx, info.FullMethod)
	resp, err := h(ctx, req)
	end(span, err)
	return resp, err
}

func (t serverTracing) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, span := t.start(ss.Context(), info.FullMethod)
	err := h(srv, tracedStream{ServerStream: ss, ctx: ctx})
	end(span, err)
	return err
}

type tracedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s tracedStream) Context() context.Context { return s.ctx }

// grpcServer is go-plugin's default server with the tracing interceptors.
func (t serverTracing) grpcServer(opts []grpc.ServerOption) *grpc.Server {
	return goplugin.DefaultGRPCServer(append(opts, grpc.ChainUnaryInterceptor(t.unary), grpc.ChainStreamInterceptor(t.stream)))
}
