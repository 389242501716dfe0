//go:build !race

// The race detector makes sync.Pool drop items at random, so allocation counts are checked without
// it; scripts/test.sh runs these tests in a separate step.

package session_test

import (
	"context"
	"testing"
)

// A cache hit, the interceptor's steady state, allocates nothing.
func TestCacheHitAllocatesNothing(t *testing.T) {
	c := benchCache(t)
	ctx := context.Background()
	if _, err := c.Get(ctx, benchToken); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := c.Get(ctx, benchToken); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per cache hit", n)
	}
}

// Peek, the tap handle's hit path, allocates nothing either.
func TestCachePeekAllocatesNothing(t *testing.T) {
	c := benchCache(t)
	if _, err := c.Get(context.Background(), benchToken); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(1000, func() {
		if c.Peek(benchToken) == nil {
			t.Fatal("no hit")
		}
	}); n != 0 {
		t.Errorf("%v allocations per Peek", n)
	}
}
