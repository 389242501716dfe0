package pgstore_test

import (
	"context"
	"testing"

	"github.com/keyfort/keyfort/session/pgstore"
	"github.com/keyfort/keyfort/session/sessiontest"
)

// BenchmarkRotate is one refresh's store work: a transaction that locks the family's row, applies
// the rotation rule and updates it. Compare BenchmarkRawRoundTrip: one query's round trip.
func BenchmarkRotate(b *testing.B) {
	a, u := admin(b)
	sessiontest.BenchRotate(b, open(b, pgstore.Config{URL: u, Prefix: prefix(b, a), CleanupInterval: -1}))
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
