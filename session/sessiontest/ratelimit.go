package sessiontest

import (
	"context"
	"strings"
	"testing"
	"time"
)

// RateLimiter is a store's shared rate limit (identityrpc.SharedRateLimiter).
type RateLimiter interface {
	Allow(ctx context.Context, key string, perSecond float64, burst int) (bool, error)
}

// RunRateLimitTests checks a shared rate limit through two stores on the same backing store (two
// replicas): they draw from one bucket per client (the burst is shared, the call past it refused on
// either), another client has its own, a bucket refills at its rate, a rate of zero is refused, and
// the clients' names are not stored as given (stored lists the keys the store holds).
func RunRateLimitTests(t *testing.T, one, two RateLimiter, stored func() []string) {
	t.Helper()
	ctx := context.Background()
	allow := func(s RateLimiter, key string, perSecond float64, burst int) bool {
		t.Helper()
		ok, err := s.Allow(ctx, key, perSecond, burst)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	const gw = "id:spiffe://keyfort.test/ns/prod/sa/gateway"
	// Three calls at once, then one an hour: the fourth in a row is refused whatever the speed.
	for i, s := range []RateLimiter{one, two, one} {
		if !allow(s, gw, 0.0003, 3) {
			t.Fatalf("call %d within the shared burst was refused", i+1)
		}
	}
	if allow(two, gw, 0.0003, 3) || allow(one, gw, 0.0003, 3) {
		t.Error("a call past the shared burst was allowed")
	}
	if !allow(two, "ip:10.0.0.7", 0.0003, 3) {
		t.Error("another client's first call was refused")
	}
	// Two a second, one at once: refused right after, allowed again once the bucket refilled.
	if !allow(one, "id:refill", 2, 1) {
		t.Fatal("the first call was refused")
	}
	if allow(two, "id:refill", 2, 1) {
		t.Error("a second call within the interval was allowed")
	}
	for i := 0; !allow(two, "id:refill", 2, 1); i++ {
		if i == 100 {
			t.Fatal("the bucket never refilled")
		}
		time.Sleep(50 * time.Millisecond)
	}
	keys := stored()
	if len(keys) != 3 {
		t.Errorf("buckets stored: %q, want 3", keys)
	}
	for _, k := range keys {
		if strings.Contains(k, "spiffe") || strings.Contains(k, "10.0.0.7") {
			t.Errorf("a client's name is stored as given: %s", k)
		}
	}
	if _, err := one.Allow(ctx, gw, 0, 3); err == nil {
		t.Error("a rate of zero was accepted")
	}
}
