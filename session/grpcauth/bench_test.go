package grpcauth_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/tap"

	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/grpcauth"
)

// acceptAll authenticates any token: these benchmarks measure the interceptor on a cached session.
type acceptAll struct{}

func (acceptAll) Authenticate(context.Context, string) (session.Principal, error) {
	return session.Principal{Subject: "s", ExpiresAt: time.Now().Add(time.Hour)}, nil
}

const benchToken = "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIiwidHlwIjoiYXQrand0In0." +
	"eyJpc3MiOiJodHRwczovL2tleWZvcnQudGVzdCIsInN1YiI6ImFsaWNlIiwiYXVkIjoiYXBpIiwiZXhwIjoxODAwMDAwMDAwLCJpYXQiOjE3MDAwMDAwMDAsImp0aSI6ImoxIiwidGlkIjoiYWNtZSJ9." +
	"c2lnbmF0dXJlLW9mLTY0LWJ5dGVzLXNpZ25hdHVyZS1vZi02NC1ieXRlcy1zaWduYXR1cmUtb2YtNjQtYnl0ZXMtc2lnbg"

// incoming is a call's context as a gRPC server builds it: the headers grpc-go clients send, and
// the bearer token.
func incoming() context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.MD{
		":authority":           {"127.0.0.1:7070"},
		"content-type":         {"application/grpc"},
		"user-agent":           {"grpc-go/1.85.0"},
		"grpc-accept-encoding": {"gzip"},
		"authorization":        {"Bearer " + benchToken},
	})
}

var info = &grpc.UnaryServerInfo{FullMethod: "/keyfort.example.kv.v1.KeyValueService/Get"}

func handler(ctx context.Context, _ any) (any, error) {
	if _, ok := session.FromContext(ctx); !ok {
		return nil, context.Canceled
	}
	return nil, nil
}

// BenchmarkUnaryInterceptorHit is a guarded call on a cached session: credential header, keyed hash,
// cache hit, the session put in the handler's context.
func BenchmarkUnaryInterceptorHit(b *testing.B) {
	c, err := session.NewCache(session.CacheConfig{Authenticator: acceptAll{}, IdleTimeout: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	icpt := grpcauth.UnaryServerInterceptor(grpcauth.Config{Sessions: c})
	ctx := incoming()
	if _, err := icpt(ctx, nil, info, handler); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := icpt(ctx, nil, info, handler); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTappedInterceptorHit is the same guarded call with the tap handle in front
// (Guard.ServerOptions): the tap handle reads the credential headers in place and puts the cached
// session in the call's context; the interceptor takes it from there.
func BenchmarkTappedInterceptorHit(b *testing.B) {
	c, err := session.NewCache(session.CacheConfig{Authenticator: acceptAll{}, IdleTimeout: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	g := grpcauth.New(grpcauth.Config{Sessions: c})
	th, icpt := g.TapHandle(), g.UnaryServerInterceptor()
	md, _ := metadata.FromIncomingContext(incoming())
	base := context.Background()
	if _, err := c.Get(base, benchToken); err != nil {
		b.Fatal(err)
	}
	ti := &tap.Info{FullMethodName: info.FullMethod, Header: md}
	b.ReportAllocs()
	for b.Loop() {
		ctx, err := th(base, ti)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := icpt(ctx, nil, info, handler); err != nil {
			b.Fatal(err)
		}
	}
}

type mac struct {
	h   hash.Hash
	sum [32]byte
}

// pooledMAC is the raw keyed hash: a pooled HMAC-SHA-256 reading its input in place.
func pooledMAC() func(string) [32]byte {
	key := []byte("0123456789abcdef0123456789abcdef")
	pool := sync.Pool{New: func() any { return &mac{h: hmac.New(sha256.New, key)} }}
	return func(signed string) [32]byte {
		m := pool.Get().(*mac)
		m.h.Reset()
		m.h.Write(unsafe.Slice(unsafe.StringData(signed), len(signed)))
		k := [32]byte(m.h.Sum(m.sum[:0]))
		pool.Put(m)
		return k
	}
}

// BenchmarkRawInterceptorLimit is what any gRPC interceptor doing this job must do: read both
// credential headers through grpc-go's metadata API (the second to refuse conflicting credentials;
// the API copies what it returns and scans every header for an absent one), a pooled HMAC-SHA-256
// of the signed part read in place, a map lookup, and a context value for the handler. (The bare
// keyed hash + map lookup is BenchmarkRawKeyedHashMapLookup in package session.)
func BenchmarkRawInterceptorLimit(b *testing.B) {
	sum := pooledMAC()
	signed := benchToken[:strings.LastIndexByte(benchToken, '.')]
	type ctxKey struct{}
	sessions := map[[32]byte]*int{}
	v := 1
	sessions[sum(signed)] = &v
	ctx := incoming()
	b.ReportAllocs()
	for b.Loop() {
		vals := metadata.ValueFromIncomingContext(ctx, "authorization")
		if len(metadata.ValueFromIncomingContext(ctx, "x-prism-token")) != 0 {
			b.Fatal("two credentials")
		}
		tok := strings.TrimPrefix(vals[0], "Bearer ")
		s := sessions[sum(tok[:strings.LastIndexByte(tok, '.')])]
		if s == nil {
			b.Fatal("miss")
		}
		if _, err := func(ctx context.Context, _ any) (any, error) {
			_ = ctx.Value(ctxKey{})
			return nil, nil
		}(context.WithValue(ctx, ctxKey{}, s), nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawTappedLimit is the tapped path's job with raw primitives: both credential headers read
// in place from the received metadata, a pooled HMAC-SHA-256 of the signed part, a map lookup, and a
// context value for the handler.
func BenchmarkRawTappedLimit(b *testing.B) {
	sum := pooledMAC()
	signed := benchToken[:strings.LastIndexByte(benchToken, '.')]
	type ctxKey struct{}
	sessions := map[[32]byte]*int{}
	v := 1
	sessions[sum(signed)] = &v
	md, _ := metadata.FromIncomingContext(incoming())
	base := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		vals := md["authorization"]
		if len(md["x-prism-token"]) != 0 {
			b.Fatal("two credentials")
		}
		tok := strings.TrimPrefix(vals[0], "Bearer ")
		s := sessions[sum(tok[:strings.LastIndexByte(tok, '.')])]
		if s == nil {
			b.Fatal("miss")
		}
		if _, err := func(ctx context.Context, _ any) (any, error) {
			_ = ctx.Value(ctxKey{})
			return nil, nil
		}(context.WithValue(base, ctxKey{}, s), nil); err != nil {
			b.Fatal(err)
		}
	}
}
