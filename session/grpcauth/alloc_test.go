//go:build !race

// The race detector makes sync.Pool drop items at random, so allocation counts are checked without
// it; scripts/test.sh runs these tests in a separate step.

package grpcauth_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/tap"

	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/grpcauth"
)

// A guarded call on a cached session through the tap handle and the interceptor allocates only the
// context value that hands the session to the handler.
func TestTappedCallAllocatesOnlyItsContextValue(t *testing.T) {
	c, err := session.NewCache(session.CacheConfig{Authenticator: acceptAll{}, IdleTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	g := grpcauth.New(grpcauth.Config{Sessions: c})
	th, icpt := g.TapHandle(), g.UnaryServerInterceptor()
	md, _ := metadata.FromIncomingContext(incoming())
	if _, err := c.Get(context.Background(), benchToken); err != nil {
		t.Fatal(err)
	}
	ti := &tap.Info{FullMethodName: info.FullMethod, Header: md}
	if n := testing.AllocsPerRun(1000, func() {
		ctx, err := th(context.Background(), ti)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := icpt(ctx, nil, info, handler); err != nil {
			t.Fatal(err)
		}
	}); n != 1 {
		t.Errorf("%v allocations per tapped call, want 1 (the context value)", n)
	}
}
