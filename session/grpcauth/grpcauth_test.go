package grpcauth_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/grpcauth"
	"github.com/keyfort/keyfort/session/oidc"
	"github.com/keyfort/keyfort/session/oidc/oidctest"
)

type auth struct{ v *oidc.Verifier }

func (a auth) Authenticate(ctx context.Context, raw string) (session.Principal, error) {
	t, err := a.v.Verify(ctx, raw)
	if err != nil {
		return session.Principal{}, errors.Join(session.ErrUnauthenticated, err)
	}
	return session.Principal{Subject: t.Subject, ExpiresAt: t.ExpiresAt, Identity: provider.SensitiveString(raw)}, nil
}

type server struct {
	addr    string
	cache   *session.Cache
	iss     *oidctest.Issuer
	mu      sync.Mutex
	subject string // the subject the handler saw in its context
}

// wiring is how a server installs the guard: its interceptors alone, or with the tap handle in
// front (Guard.ServerOptions). Every server test runs both ways.
type wiring struct {
	name   string
	tapped bool
}

var wirings = []wiring{{"interceptors", false}, {"tap+interceptors", true}}

func eachWiring(t *testing.T, f func(t *testing.T, w wiring)) {
	for _, w := range wirings {
		t.Run(w.name, func(t *testing.T) { f(t, w) })
	}
}

func start(t *testing.T, w wiring, mut func(*grpcauth.Config)) *server {
	return startWith(t, w, nil, mut)
}

func startWith(t *testing.T, w wiring, cacheMut func(*session.CacheConfig), mut func(*grpcauth.Config)) *server {
	t.Helper()
	iss := oidctest.New(t)
	v, err := oidc.New(context.Background(), oidc.Config{Issuer: iss.URL, Audience: "client-1"})
	if err != nil {
		t.Fatal(err)
	}
	cc := session.CacheConfig{Authenticator: auth{v}, Store: session.NewMemoryStore(nil)}
	if cacheMut != nil {
		cacheMut(&cc)
	}
	cache, err := session.NewCache(cc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cache.Close() })
	s := &server{cache: cache, iss: iss}
	cfg := grpcauth.Config{Sessions: cache, Exempt: []string{"/grpc.health.v1.Health/List"}}
	if mut != nil {
		mut(&cfg)
	}
	record := func(ctx context.Context) {
		if sess, ok := session.FromContext(ctx); ok {
			s.mu.Lock()
			s.subject = sess.Principal.Subject
			s.mu.Unlock()
		}
	}
	recorder := grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		record(ctx)
		return h(ctx, req)
	})
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(grpcauth.UnaryServerInterceptor(cfg)),
		grpc.ChainStreamInterceptor(grpcauth.StreamServerInterceptor(cfg)),
	}
	if w.tapped {
		opts = grpcauth.New(cfg).ServerOptions()
	}
	srv := grpc.NewServer(append(opts, recorder)...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	s.addr = ln.Addr().String()
	return s
}

func (s *server) client(t *testing.T) healthpb.HealthClient {
	t.Helper()
	cc, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return healthpb.NewHealthClient(cc)
}

func (s *server) token(t *testing.T) string {
	return s.iss.Sign(t, "k1", s.iss.Claims("alice", "client-1"), nil)
}

func call(t *testing.T, s *server, md ...string) error {
	t.Helper()
	ctx := metadata.AppendToOutgoingContext(context.Background(), md...)
	_, err := s.client(t).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func TestCredentialsInMetadata(t *testing.T) {
	eachWiring(t, func(t *testing.T, w wiring) {
		s := start(t, w, nil)
		tok := s.token(t)
		tests := []struct {
			name string
			md   []string
			want codes.Code
		}{
			{"bearer", []string{"authorization", "Bearer " + tok}, codes.OK},
			{"bearer lower case", []string{"authorization", "bearer " + tok}, codes.OK},
			{"x-prism-token", []string{"x-prism-token", tok}, codes.OK},
			{"none", nil, codes.Unauthenticated},
			{"basic auth", []string{"authorization", "Basic dXNlcjpwYXNz"}, codes.Unauthenticated},
			{"two credentials", []string{"authorization", "Bearer " + tok, "x-prism-token", tok}, codes.Unauthenticated},
			{"two bearer values", []string{"authorization", "Bearer " + tok, "authorization", "Bearer " + tok}, codes.Unauthenticated},
			{"oversized", []string{"x-prism-token", strings.Repeat("a", grpcauth.DefaultMaxCredentialSize+1)}, codes.Unauthenticated},
			{"forged", []string{"x-prism-token", tok[:len(tok)-4] + "AAAA"}, codes.Unauthenticated},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				err := call(t, s, tc.md...)
				if got := status.Code(err); got != tc.want {
					t.Fatalf("got %v (%v), want %v", got, err, tc.want)
				}
				if tc.want == codes.Unauthenticated && status.Convert(err).Message() != "unauthenticated" {
					t.Errorf("message %q reveals internals; want the generic message", status.Convert(err).Message())
				}
			})
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.subject != "alice" {
			t.Errorf("the handler saw subject %q in its context, want alice", s.subject)
		}
	})
}

func TestExemptAndDisabled(t *testing.T) {
	eachWiring(t, func(t *testing.T, w wiring) {
		s := start(t, w, nil)
		if _, err := s.client(t).List(context.Background(), &healthpb.HealthListRequest{}); status.Code(err) == codes.Unauthenticated {
			t.Errorf("an exempt method needs a session: %v", err)
		}
		d := start(t, w, func(c *grpcauth.Config) { c.Disabled = true })
		if err := call(t, d); err != nil {
			t.Errorf("disabled mode: %v", err)
		}
	})
}

func TestStreamEndsWithItsSession(t *testing.T) {
	eachWiring(t, func(t *testing.T, w wiring) {
		s := start(t, w, nil)
		tok := s.token(t)
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
		stream, err := s.client(t).Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil { // the first status: the stream is up and guarded
			t.Fatal(err)
		}
		if err := s.cache.End(context.Background(), tok, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		streamEnds(t, stream, "ended")
		if err := call(t, s, "authorization", "Bearer "+tok); status.Code(err) != codes.Unauthenticated {
			t.Errorf("the logged-out token: got %v", err)
		}
	})
}

// TestStreamEndsWhenAnotherReplicaEndsItsSession: a replica's open stream ends when another
// replica, sharing the session store, ends the token's session (its revocation feed), though the
// stream's server would not revalidate the session for an hour.
func TestStreamEndsWhenAnotherReplicaEndsItsSession(t *testing.T) {
	eachWiring(t, func(t *testing.T, w wiring) {
		shared := session.NewMemoryStore(nil)
		s := startWith(t, w, func(c *session.CacheConfig) { c.Store, c.Revalidate = shared, time.Hour }, nil)
		other, err := session.NewCache(session.CacheConfig{Authenticator: auth{}, Store: shared})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = other.Close() })
		tok := s.token(t)
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
		stream, err := s.client(t).Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
		if err := other.End(context.Background(), tok, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		streamEnds(t, stream, "was ended by another replica")
	})
}

// TestStreamEndsWhenItsSessionExpires: a session reaching its token's expiry in the middle of a
// stream ends the stream.
func TestStreamEndsWhenItsSessionExpires(t *testing.T) {
	eachWiring(t, func(t *testing.T, w wiring) {
		var mu sync.Mutex
		now := time.Now()
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		s := startWith(t, w, func(c *session.CacheConfig) { c.Now = clock }, nil)
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+s.token(t))
		stream, err := s.client(t).Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		now = now.Add(2 * time.Hour) // past the token's exp (one hour)
		mu.Unlock()
		s.cache.CleanUp()
		streamEnds(t, stream, "expired")
	})
}

// streamEnds waits for the next Recv on stream to fail: the stream ended with its session.
func streamEnds(t *testing.T, stream grpc.ServerStreamingClient[healthpb.HealthCheckResponse], why string) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := stream.Recv()
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("the stream went on after its session %s", why)
		}
	case <-time.After(10 * time.Second): // a liveness bound, not a performance threshold
		t.Fatalf("the stream outlived its session, which %s", why)
	}
}

// TestHeaderListBounded: Guard.ServerOptions bounds a call's headers together at the transport, so a
// client cannot make the server read megabytes of metadata; calls within the bound are served, and
// the server keeps serving after refusing one.
func TestHeaderListBounded(t *testing.T) {
	s := start(t, wiring{name: "tap+interceptors", tapped: true}, nil)
	tok := s.token(t)
	if err := call(t, s, "authorization", "Bearer "+tok, "x-padding", strings.Repeat("p", 32<<10)); err != nil {
		t.Fatalf("32 KiB of headers: %v", err)
	}
	err := call(t, s, "authorization", "Bearer "+tok, "x-padding", strings.Repeat("p", grpcauth.DefaultMaxHeaderListSize))
	if status.Code(err) == codes.OK {
		t.Fatal("headers above the bound were served")
	}
	if err := call(t, s, "authorization", "Bearer "+tok); err != nil {
		t.Errorf("after a refused call: %v", err)
	}
}
