package redisstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyfort/keyfort/internal/redistest"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/redisstore"
)

// TestSharedRateLimit: two stores on one Redis (two replicas) draw from one bucket per client:
// the burst is shared, the call past it is refused on either, another client has its own bucket,
// a bucket refills at its rate (on Redis's clock), the client's name is not stored as given, and
// a Redis that cannot be reached is an error wrapping ErrStoreUnavailable.
func TestSharedRateLimit(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := redistest.Client(t)
	replica := func() *redisstore.Store {
		s, err := redisstore.New(ctx, redisstore.Config{Client: rdb, Prefix: prefix, HashKeyCheck: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	a, b := replica(), replica()
	allow := func(s *redisstore.Store, key string, perSecond float64, burst int) bool {
		t.Helper()
		ok, err := s.Allow(ctx, key, perSecond, burst)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	const gw = "id:spiffe://keyfort.test/ns/prod/sa/gateway"
	// Three calls at once, then one an hour: the fourth in a row is refused whatever the speed.
	for i, s := range []*redisstore.Store{a, b, a} {
		if !allow(s, gw, 0.0003, 3) {
			t.Fatalf("call %d within the shared burst was refused", i+1)
		}
	}
	if allow(b, gw, 0.0003, 3) || allow(a, gw, 0.0003, 3) {
		t.Error("a call past the shared burst was allowed")
	}
	if !allow(b, "ip:10.0.0.7", 0.0003, 3) {
		t.Error("another client's first call was refused")
	}
	// Two a second, one at once: refused right after, allowed again once the bucket refilled.
	if !allow(a, "id:refill", 2, 1) {
		t.Fatal("the first call was refused")
	}
	if allow(b, "id:refill", 2, 1) {
		t.Error("a second call within the interval was allowed")
	}
	for i := 0; !allow(b, "id:refill", 2, 1); i++ {
		if i == 100 {
			t.Fatal("the bucket never refilled")
		}
		time.Sleep(50 * time.Millisecond)
	}
	keys, err := rdb.Keys(ctx, prefix+"rate:*").Result()
	if err != nil || len(keys) != 3 {
		t.Fatalf("bucket keys: %v, %v", keys, err)
	}
	for _, k := range keys {
		if strings.Contains(k, "spiffe") || strings.Contains(k, "10.0.0.7") {
			t.Errorf("a client's name is stored as given: %s", k)
		}
	}
	if _, err := a.Allow(ctx, gw, 0, 3); err == nil {
		t.Error("a rate of zero was accepted")
	}
	// A Redis that cannot be reached any more (the store's connection gone): an error, no verdict.
	lost, cut := redistest.Lost(t)
	gone, err := redisstore.New(ctx, redisstore.Config{Client: lost, Prefix: prefix, HashKeyCheck: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer gone.Close()
	cut()
	if _, err := gone.Allow(ctx, gw, 1, 1); !errors.Is(err, session.ErrStoreUnavailable) {
		t.Errorf("Allow on an unreachable Redis: %v, want ErrStoreUnavailable", err)
	}
}
