package kvserver_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc/metadata"

	"github.com/keyfort/keyfort/examples/guarded-kv/kvserver"
	pb "github.com/keyfort/keyfort/internal/kvexamplepb/v1"
	"github.com/keyfort/keyfort/internal/spantest"
	"github.com/keyfort/keyfort/session/oidc/oidctest"
)

// TestTracedService: with a TracerProvider, a guarded call is one trace under the caller's: the
// service's server span, the session's creation on the cache miss, the first fetch of its backend
// credentials and the provider's call for them beneath; the next call of the session is its server
// span alone (a cache hit makes none). No token reaches a span.
func TestTracedService(t *testing.T) {
	iss := oidctest.New(t)
	t.Setenv("GOOGLE_CLIENT_ID", "client-123.apps.googleusercontent.com")
	rec := spantest.New(t)
	_, kv := serve(t, "auth-enabled.yaml", iss.URL, kvserver.Options{TracerProvider: rec})
	tok := iss.Sign(t, "k1", iss.Claims("alice", "client-123.apps.googleusercontent.com"), nil)

	ctx, caller := rec.Tracer("test").Start(context.Background(), "caller")
	md := metadata.MD{}
	propagation.TraceContext{}.Inject(ctx, metadataCarrier(md))
	out := metadata.NewOutgoingContext(context.Background(), metadata.Join(md, metadata.Pairs("authorization", "Bearer "+tok)))
	if _, err := kv.Put(out, &pb.PutRequest{Key: "a", Value: "1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(out, &pb.GetRequest{Key: "a"}); err != nil {
		t.Fatal(err)
	}
	caller.End()

	// otelgrpc ends a server span just after the answer is sent: wait for the last one.
	byName := map[string]int{}
	for range 500 {
		byName = map[string]int{}
		for _, s := range rec.Ended() {
			if s.SpanContext().TraceID() == caller.SpanContext().TraceID() {
				byName[s.Name()]++
			}
		}
		if byName["keyfort.kvexample.v1.KeyValueService/Get"] > 0 {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	for name, want := range map[string]int{
		"keyfort.kvexample.v1.KeyValueService/Put": 1, "keyfort.kvexample.v1.KeyValueService/Get": 1,
		"keyfort.session.create": 1, "keyfort.session.credentials": 1, "keyfort.provider.Credentials": 1,
	} {
		if byName[name] != want {
			t.Errorf("spans %q in the caller's trace: %d, want %d (all: %v)", name, byName[name], want, byName)
		}
	}
	rec.NoSecret(t, tok)
}

// metadataCarrier lets a propagator write gRPC metadata.
type metadataCarrier metadata.MD

func (c metadataCarrier) Get(key string) string {
	if v := metadata.MD(c).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}
func (c metadataCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }
func (c metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
