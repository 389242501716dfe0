package redisstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyfort/keyfort/internal/redistest"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/redisstore"
	"github.com/keyfort/keyfort/session/sessiontest"
)

// replicas returns a function that opens another store (a replica) on rdb and prefix, closed when
// the test ends.
func replicas(t *testing.T, rdb *redis.Client, prefix string) func() *redisstore.Store {
	return func() *redisstore.Store {
		s, err := redisstore.New(context.Background(), redisstore.Config{Client: rdb, Prefix: prefix, HashKeyCheck: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
}

// TestSharedRateLimit: the shared rate limit's contract through two stores on one Redis (GCRA on
// Redis's clock), and a Redis that cannot be reached is an error wrapping ErrStoreUnavailable.
func TestSharedRateLimit(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := redistest.Client(t)
	replica := replicas(t, rdb, prefix)
	sessiontest.RunRateLimitTests(t, replica(), replica(), func() []string {
		keys, err := rdb.Keys(ctx, prefix+"rate:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return keys
	})
	// The store's connection gone: an error, no verdict.
	lost, cut := redistest.Lost(t)
	gone, err := redisstore.New(ctx, redisstore.Config{Client: lost, Prefix: prefix, HashKeyCheck: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer gone.Close()
	cut()
	if _, err := gone.Allow(ctx, "id:x", 1, 1); !errors.Is(err, session.ErrStoreUnavailable) {
		t.Errorf("Allow on an unreachable Redis: %v, want ErrStoreUnavailable", err)
	}
}

// TestSharedDPoPReplay: the shared DPoP replay cache's contract through two stores on one Redis
// (SET NX with the proof's remaining life), and a Redis that cannot be reached is an error.
func TestSharedDPoPReplay(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := redistest.Client(t)
	replica := replicas(t, rdb, prefix)
	sessiontest.RunSharedReplayTests(t, replica(), replica())
	lost, cut := redistest.Lost(t)
	gone, err := redisstore.New(ctx, redisstore.Config{Client: lost, Prefix: prefix, HashKeyCheck: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer gone.Close()
	cut()
	if _, err := gone.FirstUse(ctx, "00", time.Now().Add(time.Minute)); !errors.Is(err, session.ErrStoreUnavailable) {
		t.Errorf("FirstUse on an unreachable Redis: %v, want ErrStoreUnavailable", err)
	}
}
