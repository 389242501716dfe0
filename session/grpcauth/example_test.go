package grpcauth_test

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/providers/memory"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/grpcauth"
	"github.com/keyfort/keyfort/session/token"
)

// A gRPC server guarded by Keyfort: calls without a valid token are refused with
// codes.Unauthenticated, and a handler (here, an interceptor after the guard's) finds the caller's
// session in its context. The signing keys come from the memory provider; in production they come
// from the provider bound to identity.secrets.session_signing, and a service that does not issue
// tokens verifies them with session.NewAccessVerifier over the runtime's JWKS instead.
func ExampleGuard() {
	ctx := context.Background()
	mem, _ := memory.New(ctx, memory.Config{SigningKeys: map[string]memory.KeySetConfig{"session": {Algorithm: "EdDSA"}}})
	keys, _ := provider.NewClient(mem, provider.ClientConfig{Name: "dev"})
	defer keys.Close()
	m, _ := session.NewManager(session.Config{
		Issuer: "https://keyfort.example", Audience: "orders-api",
		Keys: token.KeySourceFunc(func(ctx context.Context) (provider.KeySet, error) {
			return keys.SigningKeys(ctx, "session")
		}),
	})
	cache, _ := session.NewCache(session.CacheConfig{Authenticator: m}) // m verifies Keyfort's own access tokens
	defer cache.Close()

	guard := grpcauth.New(grpcauth.Config{Sessions: cache})
	whoami := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		s, _ := session.FromContext(ctx)
		fmt.Println("session of", s.Principal.Subject)
		return handler(ctx, req)
	}
	srv := grpc.NewServer(append(guard.ServerOptions(), grpc.ChainUnaryInterceptor(whoami))...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	conn, _ := grpc.NewClient("passthrough:///bufnet", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)

	_, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
	fmt.Println("no token:", status.Code(err))

	access, _, _ := m.IssueToken(ctx, session.IssueRequest{Subject: "alice", Tenant: "acme"})
	authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+access)
	resp, err := client.Check(authed, &healthpb.HealthCheckRequest{})
	fmt.Println("alice's token:", resp.GetStatus(), err)

	_, err = client.Check(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+access+"x"), &healthpb.HealthCheckRequest{})
	fmt.Println("a tampered token:", status.Code(err))
	// Output:
	// no token: Unauthenticated
	// session of alice
	// alice's token: SERVING <nil>
	// a tampered token: Unauthenticated
}
