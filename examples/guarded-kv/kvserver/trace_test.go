package kvserver_test

import (
	"context"
	"testing"
	"time"

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

	_, caller := rec.Tracer("test").Start(context.Background(), "caller")
	sc := caller.SpanContext()
	out := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok,
		"traceparent", "00-"+sc.TraceID().String()+"-"+sc.SpanID().String()+"-01") // W3C Trace Context
	if _, err := kv.Put(out, &pb.PutRequest{Key: "a", Value: "1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(out, &pb.GetRequest{Key: "a"}); err != nil {
		t.Fatal(err)
	}
	caller.End()

	// otelgrpc ends a server span just after the answer is sent: wait for both.
	byName := map[string]int{}
	for range 500 {
		byName = map[string]int{}
		for _, s := range rec.Ended() {
			if s.SpanContext().TraceID() == caller.SpanContext().TraceID() {
				byName[s.Name()]++
			}
		}
		if byName["keyfort.kvexample.v1.KeyValueService/Put"] > 0 && byName["keyfort.kvexample.v1.KeyValueService/Get"] > 0 {
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
