package identityrpc_test

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/keyfort/keyfort/session/identityrpc"
)

// TestRateLimitBuckets: each address has its bucket (an IPv4 address and its IPv4-mapped IPv6 form
// share one; ports do not matter), a caller past it gets ResourceExhausted, introspection and
// other services' methods are not limited, and no rate limit passes everything.
func TestRateLimitBuckets(t *testing.T) {
	from := func(ip string, port int) context.Context {
		return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: port}})
	}
	call := func(icpt grpc.UnaryServerInterceptor, ctx context.Context, method string) error {
		_, err := icpt(ctx, nil, &grpc.UnaryServerInfo{FullMethod: method}, ok)
		return err
	}
	srv := identityrpc.New(nil, identityrpc.Options{RateLimit: identityrpc.RateLimit{PerSecond: 0.0001, Burst: 2}})
	defer srv.Close()
	icpt := srv.UnaryServerInterceptor()
	const start = "/keyfort.identity.v1.IdentityRuntimeService/StartIdentitySession"
	for i, ctx := range []context.Context{from("10.0.0.7", 1000), from("::ffff:10.0.0.7", 2000)} {
		if err := call(icpt, ctx, start); err != nil {
			t.Fatalf("call %d within the burst: %v", i+1, err)
		}
	}
	if err := call(icpt, from("10.0.0.7", 3000), start); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("past the burst: got %v, want ResourceExhausted", err)
	}
	if err := call(icpt, from("10.0.0.8", 1000), start); err != nil {
		t.Errorf("another address: %v", err)
	}
	for _, method := range []string{identityrpc.IntrospectionMethod, "/grpc.health.v1.Health/Check"} {
		if err := call(icpt, from("10.0.0.7", 1000), method); err != nil {
			t.Errorf("%s is not limited: %v", method, err)
		}
	}
	unlimited := identityrpc.New(nil, identityrpc.Options{})
	defer unlimited.Close()
	for range 5 {
		if err := call(unlimited.UnaryServerInterceptor(), from("10.0.0.7", 1000), start); err != nil {
			t.Fatalf("without a rate limit: %v", err)
		}
	}
}
