package session

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// The memory store collects expired entries as it goes, holding at most about twice the live ones,
// without scanning everything on every write.
func TestMemoryStoreCollectsAmortised(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := NewMemoryStore(func() time.Time { return now })
	ctx := context.Background()
	const live = 3000
	for i := range live {
		_ = s.CreateFamily(ctx, Family{ID: fmt.Sprintf("live-%d", i), ExpiresAt: now.Add(1000 * time.Hour)})
	}
	scans := 0
	for i := range 50 * live {
		before := len(s.families) + len(s.tombstones)
		if i%2 == 0 {
			_ = s.CreateFamily(ctx, Family{ID: fmt.Sprintf("dead-%d", i), ExpiresAt: now.Add(time.Second)})
		} else {
			_ = s.Tombstone(ctx, fmt.Sprintf("t-%d", i), now.Add(time.Second))
		}
		if len(s.families)+len(s.tombstones) < before {
			scans++
		}
		now = now.Add(2 * time.Second) // everything written so far, but the live families, has expired
		if n := len(s.families) + len(s.tombstones); n > 2*live+gcMinWrites+1 {
			t.Fatalf("after %d writes the store holds %d entries for %d live ones", i+1, n, live)
		}
	}
	if scans == 0 || scans > 50*live/gcMinWrites {
		t.Errorf("%d collections in %d writes: want at least one and at most one per %d writes", scans, 50*live, gcMinWrites)
	}
	for i := range live {
		if f, _ := s.Family(ctx, fmt.Sprintf("live-%d", i)); f.Revoked {
			t.Fatalf("live family %d was collected", i)
		}
	}
}

// BenchmarkMemoryStoreCreateFamily writes into a store that already holds 100k live families: the
// cost per write must not grow with them.
func BenchmarkMemoryStoreCreateFamily(b *testing.B) {
	s := NewMemoryStore(nil)
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	for i := range 100_000 {
		_ = s.CreateFamily(ctx, Family{ID: fmt.Sprintf("f-%d", i), ExpiresAt: exp})
	}
	ids := make([]string, 0, 1<<16)
	for i := range cap(ids) {
		ids = append(ids, fmt.Sprintf("n-%d", i))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_ = s.CreateFamily(ctx, Family{ID: ids[i&(len(ids)-1)], ExpiresAt: exp})
		i++
	}
}
