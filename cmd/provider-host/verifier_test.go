package main_test

import (
	"context"
	"errors"
	"testing"
	"time"

	pb "github.com/keyfort/keyfort/api/identity/v1"
	"github.com/keyfort/keyfort/internal/redistest"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/oidc/oidctest"
	"github.com/keyfort/keyfort/session/redisstore"
	"github.com/keyfort/keyfort/session/token"
)

// TestGuardedServiceVerifiesRuntimeTokens: a service other than the runtime accepts the access
// tokens serve issues, verifying them with serve's published JWKS (public keys only) and its Redis
// (revocations): a live session's token is accepted, and after EndIdentitySession the service's
// cached session ends at once, with no call (the Redis revocation feed: its revalidation is an hour
// away), and the token is refused.
func TestGuardedServiceVerifiesRuntimeTokens(t *testing.T) {
	redistest.Client(t) // skips without Redis (fails in CI)
	iss := oidctest.New(t)
	rt, httpAddr := startRuntime(t, iss, "    redis_url: "+redistest.URL()+"\n", "")
	ctx := context.Background()

	keys, err := token.NewJWKSKeys(ctx, token.JWKSConfig{URL: "http://" + httpAddr + "/.well-known/jwks.json"})
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	store, err := redisstore.New(ctx, redisstore.Config{URL: redistest.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	av, err := session.NewAccessVerifier(session.AccessVerifierConfig{Issuer: "https://keyfort.test", Audience: "api", Keys: keys, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	cache, err := session.NewCache(session.CacheConfig{Authenticator: av, Store: store, Revalidate: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()

	started, err := rt.StartIdentitySession(ctx, &pb.StartIdentitySessionRequest{IdentityProvider: "google",
		ExternalToken: iss.Sign(t, "k1", iss.Claims("alice", "client-123.apps.googleusercontent.com"), nil)})
	if err != nil {
		t.Fatal(err)
	}
	access := started.GetTokens().GetAccessToken()
	s, err := cache.Get(ctx, access)
	if err != nil {
		t.Fatalf("the runtime's access token at the guarded service: %v", err)
	}
	if s.Principal.Subject != "alice" {
		t.Errorf("subject %q", s.Principal.Subject)
	}
	if _, err := cache.Get(ctx, started.GetTokens().GetRefreshToken()); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("the refresh token at the guarded service: got %v", err)
	}
	if _, err := rt.EndIdentitySession(ctx, &pb.EndIdentitySessionRequest{Token: access}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the guarded session did not end")
	}
	if _, err := cache.Get(ctx, access); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("after the logout the guarded service: got %v, want ErrUnauthenticated", err)
	}
}
