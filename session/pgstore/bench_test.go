package pgstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/pgstore"
)

// BenchmarkRotate is one refresh's store work: a transaction that locks the family's row, applies
// the rotation rule and updates it. Compare BenchmarkRawRoundTrip: one query's round trip.
func BenchmarkRotate(b *testing.B) {
	a, u := admin(b)
	s := open(b, pgstore.Config{URL: u, Prefix: prefix(b, a), CleanupInterval: -1})
	ctx := context.Background()
	now := time.Now()
	if err := s.CreateFamily(ctx, session.Family{ID: "bench", Current: "j0", ExpiresAt: now.Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	cur := "j0"
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		next := fmt.Sprint("j", i+1)
		if _, out, err := s.Rotate(ctx, "bench", cur, next, now, time.Second); err != nil || out != session.Rotated {
			b.Fatal(out, err)
		}
		cur = next
	}
}

// BenchmarkRawRoundTrip is the floor under any store operation: one indexed read through the same
// pool (Tombstoned of a key that is not there).
func BenchmarkRawRoundTrip(b *testing.B) {
	a, u := admin(b)
	s := open(b, pgstore.Config{URL: u, Prefix: prefix(b, a), CleanupInterval: -1})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Tombstoned(ctx, "none"); err != nil {
			b.Fatal(err)
		}
	}
}
