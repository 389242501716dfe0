package grpcauth_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/keyfort/keyfort/internal/spantest"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/grpcauth"
	"github.com/keyfort/keyfort/session/sessiontest"
)

// TestRefusalMarksTheCallSpan: with otelgrpc's server handler, a call the guard refuses carries a
// keyfort.guard.refused event naming the reason on its server span (both wirings); an accepted
// call none; no token reaches a span.
func TestRefusalMarksTheCallSpan(t *testing.T) {
	eachWiring(t, func(t *testing.T, w wiring) {
		m, startFor := sessiontest.BoundManager(t)
		cache, err := session.NewCache(session.CacheConfig{Authenticator: m, Store: m.Store()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cache.Close() })
		rec := spantest.New(t)
		addr := listenGuarded(t, w, grpcauth.Config{Sessions: cache},
			grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(rec))))
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close() })
		hc := healthpb.NewHealthClient(cc)
		tok := startFor("")
		forged := tok[:len(tok)-4] + "AAAA"
		reasons := []string{}
		for _, md := range [][]string{{"authorization", "Bearer " + tok}, nil, {"authorization", "Bearer " + forged}} {
			_, _ = hc.Check(metadata.AppendToOutgoingContext(context.Background(), md...), &healthpb.HealthCheckRequest{})
		}
		var spans []sdktrace.ReadOnlySpan
		for range 500 { // a server span ends just after its answer is sent
			if spans = rec.Named("grpc.health.v1.Health/Check"); len(spans) == 3 {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		// Spans are recorded as they end, and a server span ends just after its answer, so the
		// recorder's order need not be the calls' order; the calls were sequential, their starts are.
		slices.SortFunc(spans, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
		for _, s := range spans {
			reason := "none"
			for _, ev := range s.Events() {
				if ev.Name == "keyfort.guard.refused" {
					reason = ev.Attributes[0].Value.AsString()
				}
			}
			reasons = append(reasons, reason)
		}
		if len(reasons) != 3 || reasons[0] != "none" || reasons[1] != "credential" || reasons[2] != "unauthenticated" {
			t.Errorf("refusal reasons on the calls' spans: %v, want [none credential unauthenticated]", reasons)
		}
		rec.NoSecret(t, tok, forged)
	})
}
