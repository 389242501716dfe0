package grpcauth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/tap"

	"github.com/keyfort/keyfort/internal/rawbench"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/dpop"
	"github.com/keyfort/keyfort/session/grpcauth"
)

// acceptAll authenticates any token: these benchmarks measure the interceptor on a cached session.
type acceptAll struct{}

func (acceptAll) Authenticate(context.Context, string) (session.Principal, error) {
	return session.Principal{Subject: "s", ExpiresAt: time.Now().Add(time.Hour)}, nil
}

const benchToken = rawbench.Token

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
func BenchmarkTappedInterceptorHit(b *testing.B) { benchTapped(b, acceptAll{}, context.Background()) }

// benchTapped measures tapped guarded calls on a cached session that auth authenticates, arriving
// with the context base (a peer, say).
func benchTapped(b *testing.B, auth session.Authenticator, base context.Context) {
	c, err := session.NewCache(session.CacheConfig{Authenticator: auth, IdleTimeout: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	g := grpcauth.New(grpcauth.Config{Sessions: c})
	th, icpt := g.TapHandle(), g.UnaryServerInterceptor()
	md, _ := metadata.FromIncomingContext(incoming())
	if _, err := c.Get(base, benchToken); err != nil {
		b.Fatal(err)
	}
	ti := &tap.Info{FullMethodName: info.FullMethod, Header: md}
	if ctx, _ := th(base, ti); ctx == base {
		b.Fatal("the tap handle did not serve the cached session")
	}
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

// acceptBound authenticates any token as bound to the client boundURI names.
type acceptBound struct{}

const boundURI = "spiffe://keyfort.test/ns/prod/sa/gateway"

func (acceptBound) Authenticate(context.Context, string) (session.Principal, error) {
	return session.Principal{Subject: "s", ExpiresAt: time.Now().Add(time.Hour), Client: boundURI}, nil
}

// BenchmarkTappedInterceptorHitBound is BenchmarkTappedInterceptorHit for an access token bound to
// its client (session.Config.BindAccessTokens), presented over mutual TLS by that client: the cost
// of the binding is the peer's certificate read from the context and compared, as a pointer, with
// the one the session last found of its client.
func BenchmarkTappedInterceptorHitBound(b *testing.B) {
	uri, _ := url.Parse(boundURI)
	leaf := &x509.Certificate{URIs: []*url.URL{uri}}
	benchTapped(b, acceptBound{}, peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000},
		AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}}}))
}

// rawJob is what follows reading the credential headers in the raw benchmarks: the keyed hash of
// the signed part, the map lookup, and a context value for the handler.
type rawJob struct {
	sum      func(string) [32]byte
	sessions map[[32]byte]*int
}

type rawCtxKey struct{}

func newRawJob() *rawJob {
	j := &rawJob{sum: rawbench.KeyedHash(), sessions: map[[32]byte]*int{}}
	v := 1
	j.sessions[j.sum(signedPart(benchToken))] = &v
	return j
}

// signedPart is header.payload, found the fastest way: two forward IndexByte scans, which are
// vectorised (strings.LastIndexByte is a byte loop, and cost the raw job a fifth of its time).
func signedPart(tok string) string {
	i := strings.IndexByte(tok, '.')
	return tok[:i+1+strings.IndexByte(tok[i+1:], '.')]
}

func (j *rawJob) serve(b *testing.B, ctx context.Context, authorization []string, tokens int) {
	if tokens != 0 {
		b.Fatal("two credentials")
	}
	tok := strings.TrimPrefix(authorization[0], "Bearer ")
	s := j.sessions[j.sum(signedPart(tok))]
	if s == nil {
		b.Fatal("miss")
	}
	if _, err := func(ctx context.Context, _ any) (any, error) {
		_ = ctx.Value(rawCtxKey{})
		return nil, nil
	}(context.WithValue(ctx, rawCtxKey{}, s), nil); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRawInterceptorLimit is what any gRPC interceptor doing this job must do: read both
// credential headers through grpc-go's metadata API (the second to refuse conflicting credentials;
// the API copies what it returns and scans every header for an absent one), a pooled HMAC-SHA-256
// of the signed part read in place, a map lookup, and a context value for the handler. (The bare
// keyed hash + map lookup is BenchmarkRawKeyedHashMapLookup in package session.)
func BenchmarkRawInterceptorLimit(b *testing.B) {
	job := newRawJob()
	ctx := incoming()
	b.ReportAllocs()
	for b.Loop() {
		job.serve(b, ctx, metadata.ValueFromIncomingContext(ctx, "authorization"),
			len(metadata.ValueFromIncomingContext(ctx, "x-prism-token")))
	}
}

// BenchmarkRawTappedLimit is the tapped path's job with raw primitives: both credential headers read
// in place from the received metadata, a pooled HMAC-SHA-256 of the signed part, a map lookup, and a
// context value for the handler.
func BenchmarkRawTappedLimit(b *testing.B) {
	job := newRawJob()
	md, _ := metadata.FromIncomingContext(incoming())
	base := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		job.serve(b, base, md["authorization"], len(md["x-prism-token"]))
	}
}

// acceptDPoP authenticates any token as bound to the DPoP key named by its identity.
type acceptDPoP struct{ id string }

func (a acceptDPoP) Authenticate(context.Context, string) (session.Principal, error) {
	return session.Principal{Subject: "s", ExpiresAt: time.Now().Add(time.Hour), Client: a.id}, nil
}

// BenchmarkInterceptorHitDPoP is a guarded call on a cached session whose access token is bound to
// a DPoP key (ES256), with a fresh proof of it (made before the timer): the bearer call's work plus
// the proof's check (dpop.Verifier.Verify). Its physical limit is the proof's signature check
// (BenchmarkRawProofVerify/ES256 in session/dpop).
func BenchmarkInterceptorHitDPoP(b *testing.B) {
	key, err := dpop.GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	c, err := session.NewCache(session.CacheConfig{Authenticator: acceptDPoP{key.Identity()}, IdleTimeout: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	v, err := dpop.NewVerifier(dpop.Config{MaxProofs: b.N + 2})
	if err != nil {
		b.Fatal(err)
	}
	g := grpcauth.New(grpcauth.Config{Sessions: c, DPoP: v})
	th, icpt := g.TapHandle(), g.UnaryServerInterceptor()
	ctxs := make([]context.Context, b.N+1)
	for i := range ctxs {
		proof, err := key.Proof(dpop.GRPCMethod, dpop.GRPCURL("127.0.0.1:7070", info.FullMethod), benchToken)
		if err != nil {
			b.Fatal(err)
		}
		md, _ := metadata.FromIncomingContext(incoming())
		md = md.Copy()
		md.Set("authorization", "DPoP "+benchToken)
		md.Set("dpop", proof)
		ctxs[i] = metadata.NewIncomingContext(context.Background(), md)
	}
	call := func(ctx context.Context) {
		md, _ := metadata.FromIncomingContext(ctx)
		ctx, _ = th(ctx, &tap.Info{FullMethodName: info.FullMethod, Header: md})
		if _, err := icpt(ctx, nil, info, handler); err != nil {
			b.Fatal(err)
		}
	}
	call(ctxs[b.N])
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		call(ctxs[i])
	}
}
