package main_test

import (
	"context"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/keyfort/keyfort/api/identity/v1"
	"github.com/keyfort/keyfort/internal/pgtest"
	"github.com/keyfort/keyfort/internal/redistest"
	"github.com/keyfort/keyfort/session/identityrpc"
	"github.com/keyfort/keyfort/session/pgstore"
	"github.com/keyfort/keyfort/session/redisstore"
)

// TestSharedRateLimitThroughServe: with identity.session.rate_limit.shared, serve draws a client's
// calls from the bucket in the shared store, Redis or PostgreSQL: a client whose shared bucket
// other replicas emptied (here the test, drawing on it directly) is refused at once, its own
// replica's bucket still full.
func TestSharedRateLimitThroughServe(t *testing.T) {
	ctx := context.Background()
	t.Run("Redis", func(t *testing.T) {
		srv := redistest.StartServer(t)
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
		t.Cleanup(func() { _ = rdb.Close() })
		sharedRateLimit(t, `redis_url: "redis://`+srv.Addr+`/0"`, func() identityrpc.SharedRateLimiter {
			other, err := redisstore.New(ctx, redisstore.Config{Client: rdb, HashKeyCheck: -1}) // serve's prefix
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = other.Close() })
			return other
		})
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		u := pgtest.SchemaURL(t)
		sharedRateLimit(t, `postgres_url: "`+u+`"`, func() identityrpc.SharedRateLimiter {
			other, err := pgstore.New(ctx, pgstore.Config{URL: u, CleanupInterval: -1}) // serve's tables
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = other.Close() })
			return other
		})
	})
}

// sharedRateLimit runs serve over the store of storeLine (a line of identity.session) with a shared
// rate limit, and empties its caller's bucket through the store other opens, once serve made it.
func sharedRateLimit(t *testing.T, storeLine string, other func() identityrpc.SharedRateLimiter) {
	cfg := writeConfig(t, `
identity:
  secrets: { session_signing: env:KFSERVE_SIGNING }
  session:
    `+storeLine+`
    rate_limit: { per_second: 0.0003, burst: 3, shared: true }
`)
	_, log, _ := startServe(t, []string{"PATH=" + os.Getenv("PATH"), signingKeyEnv(t)}, "--config", cfg, "--grpc-addr", "127.0.0.1:0")
	rt := runtimeClient(t, log.String())
	ctx := context.Background()
	start := func() error {
		_, err := rt.StartIdentitySession(ctx, &pb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: "not.a.token"})
		return err
	}
	if err := start(); status.Code(err) == codes.ResourceExhausted {
		t.Fatalf("the first call: %v", err)
	}
	shared := other()
	for i := 0; ; i++ { // the other replicas' calls of this client take what is left of the burst
		ok, err := shared.Allow(ctx, "ip:127.0.0.1", 0.0003, 3)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if i == 3 {
			t.Fatal("the shared bucket holds more than the burst: serve's call did not draw from it")
		}
	}
	if err := start(); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a call with the shared bucket empty: got %v, want ResourceExhausted", err)
	}
}
