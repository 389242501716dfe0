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

// BenchmarkSharedRateLimit is what identity.session.rate_limit.shared adds to a runtime call on
// PostgreSQL: one upsert of the client's row in an unlogged table (allowed every time: a rate no
// loop reaches). Compare BenchmarkRawRoundTrip.
func BenchmarkSharedRateLimit(b *testing.B) {
	a, u := admin(b)
	s := open(b, pgstore.Config{URL: u, Prefix: prefix(b, a), CleanupInterval: -1})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := s.Allow(ctx, "id:spiffe://keyfort.test/ns/prod/sa/gateway", 1e9, 1_000_000); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}
