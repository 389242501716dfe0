package identityrpc_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/keyfort/keyfort/internal/metrictest"
	"github.com/keyfort/keyfort/internal/redistest"
	"github.com/keyfort/keyfort/session/identityrpc"
	"github.com/keyfort/keyfort/session/redisstore"
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

// sharedReplicas returns two services (two replicas) whose rate limit, of burst calls, is shared
// through a store on the test Redis, and the prefix of that store's keys.
func sharedReplicas(t *testing.T, burst int) (a, b *identityrpc.Server, prefix string) {
	t.Helper()
	rdb, prefix := redistest.Client(t)
	store, err := redisstore.New(context.Background(), redisstore.Config{Client: rdb, Prefix: prefix, HashKeyCheck: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	limit := identityrpc.RateLimit{PerSecond: 0.0001, Burst: burst, Shared: store}
	a, b = identityrpc.New(nil, identityrpc.Options{RateLimit: limit}), identityrpc.New(nil, identityrpc.Options{RateLimit: limit})
	t.Cleanup(a.Close)
	t.Cleanup(b.Close)
	return a, b, prefix
}

// startFrom calls StartIdentitySession through srv's rate limit with ctx, from address ip.
func startFrom(srv *identityrpc.Server, ctx context.Context, ip string) error {
	ctx = peer.NewContext(ctx, &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 4000}})
	_, err := srv.UnaryServerInterceptor()(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/keyfort.identity.v1.IdentityRuntimeService/StartIdentitySession"}, ok)
	return err
}

// TestSharedRateLimitAcrossReplicas: two services (two replicas) with a shared rate limit on one
// Redis give a client one burst between them, not one each; a shared store that cannot be reached
// lets calls through on each replica's own bucket, and counts them.
func TestSharedRateLimitAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	a, b, prefix := sharedReplicas(t, 2)
	call := func(srv *identityrpc.Server) error { return startFrom(srv, ctx, "10.0.0.9") }
	if err := call(a); err != nil {
		t.Fatal(err)
	}
	if err := call(b); err != nil {
		t.Fatal(err)
	}
	for name, srv := range map[string]*identityrpc.Server{"a": a, "b": b} {
		if err := call(srv); status.Code(err) != codes.ResourceExhausted {
			t.Errorf("replica %s past the shared burst: got %v, want ResourceExhausted", name, err)
		}
	}

	lost, cut := redistest.Lost(t)
	gone, err := redisstore.New(ctx, redisstore.Config{Client: lost, Prefix: prefix, HashKeyCheck: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer gone.Close()
	cut()
	reg := prometheus.NewRegistry()
	c := identityrpc.New(nil, identityrpc.Options{Registerer: reg, RateLimit: identityrpc.RateLimit{PerSecond: 0.0001, Burst: 2, Shared: gone}})
	defer c.Close()
	for i := range 2 {
		if err := call(c); err != nil {
			t.Errorf("call %d with the shared bucket unreachable, within the replica's own: %v", i+1, err)
		}
	}
	if err := call(c); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("past the replica's own bucket: got %v, want ResourceExhausted", err)
	}
	if n := metrictest.Counter(t, reg, "keyfort_identity_shared_rate_limit_errors_total", nil); n != 2 {
		t.Errorf("calls let through without the shared bucket: counted %v, want 2", n)
	}
}

// TestSharedRateLimitIgnoresTheCallersDeadline: a caller whose deadline has already passed when
// the shared bucket is asked does not slip past the shared bound (the store's command runs on a
// deadline of its own).
func TestSharedRateLimitIgnoresTheCallersDeadline(t *testing.T) {
	a, b, _ := sharedReplicas(t, 1)
	if err := startFrom(a, context.Background(), "10.0.0.11"); err != nil {
		t.Fatal(err)
	}
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if err := startFrom(b, expired, "10.0.0.11"); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a call with an expired deadline past the shared burst: got %v, want ResourceExhausted", err)
	}
}
