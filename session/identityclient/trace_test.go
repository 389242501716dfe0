package identityclient_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/keyfort/keyfort/api/identity/v1"
	"github.com/keyfort/keyfort/internal/spantest"
	"github.com/keyfort/keyfort/session/identityclient"
)

// TestRefreshJoinsTheCallersTrace: a refresh runs in the background, on a context no caller can
// cancel, yet in the trace of the call that started it: with otelgrpc on the runtime connection,
// the refresh call's span is a child of that call's span.
func TestRefreshJoinsTheCallersTrace(t *testing.T) {
	r := newRuntime(t)
	rec := spantest.New(t)
	cc, err := grpc.NewClient(r.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(rec))))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	s := r.start(t, identityclient.Config{Runtime: pb.NewIdentityRuntimeServiceClient(cc)})
	first := accessToken(t, s)
	r.clk.Advance(45 * time.Second)
	ctx, caller := rec.Tracer("test").Start(context.Background(), "request")
	if _, err := s.AccessToken(ctx); err != nil {
		t.Fatal(err)
	}
	caller.End()
	for range 2500 { // up to 5 s
		if accessToken(t, s) != first {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	spans := rec.Named("keyfort.identity.v1.IdentityRuntimeService/RefreshIdentitySession")
	if len(spans) != 1 {
		t.Fatalf("refresh spans: %d, want 1", len(spans))
	}
	if spans[0].Parent().SpanID() != caller.SpanContext().SpanID() {
		t.Error("the refresh call's span is not under the span of the call that started it")
	}
	rec.NoSecret(t, first, accessToken(t, s))
}
