package identityrpc_test

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"

	"github.com/keyfort/keyfort/session/identityrpc"
)

var refreshInfo = &grpc.UnaryServerInfo{FullMethod: "/keyfort.identity.v1.IdentityRuntimeService/RefreshIdentitySession"}

func ok(context.Context, any) (any, error) { return nil, nil }

// BenchmarkRateLimitedCall is a runtime call through the rate limit's interceptor, within its
// bound (a caller named by its address): the bucket found by the caller's key, one token taken.
func BenchmarkRateLimitedCall(b *testing.B) {
	srv := identityrpc.New(nil, identityrpc.Options{RateLimit: identityrpc.RateLimit{PerSecond: 1e12, Burst: 1 << 30}})
	b.Cleanup(srv.Close)
	icpt := srv.UnaryServerInterceptor()
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 41000}})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := icpt(ctx, nil, refreshInfo, ok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawRateLimit is the raw job: the caller's address from the call's peer, its bucket found
// in a map, a token taken from an x/time/rate bucket.
func BenchmarkRawRateLimit(b *testing.B) {
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 41000}})
	buckets := map[netip.Addr]*rate.Limiter{netip.AddrFrom4([4]byte{10, 0, 0, 7}): rate.NewLimiter(1e12, 1<<30)}
	b.ReportAllocs()
	for b.Loop() {
		p, _ := peer.FromContext(ctx)
		if !buckets[p.Addr.(*net.TCPAddr).AddrPort().Addr().Unmap()].Allow() {
			b.Fatal("refused")
		}
	}
}
