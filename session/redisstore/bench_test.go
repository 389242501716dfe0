package redisstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keyfort/keyfort/internal/redistest"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/redisstore"
	"github.com/keyfort/keyfort/session/sessiontest"
)

// benchStore is a store on the test Redis with a prefix of the benchmark's own, closed at its end.
func benchStore(b *testing.B) *redisstore.Store {
	b.Helper()
	_, prefix := redistest.Client(b)
	s, err := redisstore.New(context.Background(), redisstore.Config{URL: redistest.URL(), Prefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// BenchmarkRotate is one refresh's store work: the rotation script (read, rule, write, publish on
// reuse) in one round trip. Compare BenchmarkRawRoundTrip.
func BenchmarkRotate(b *testing.B) { sessiontest.BenchRotate(b, benchStore(b)) }

// BenchmarkCreateFamily is a session start's store work: the family and its subject's index entry.
// Compare BenchmarkRawRoundTrip.
func BenchmarkCreateFamily(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	exp := time.Now().Add(time.Minute)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprint("bench-", i)
		if err := s.CreateFamily(ctx, session.Family{ID: id, SessionID: id, Subject: "alice", Tenant: "acme", IdP: "google",
			Current: "j0", CurrentIssuedAt: time.Now(), ExpiresAt: exp, Origin: "o", OriginExpiresAt: exp}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawRoundTrip is the floor under any store operation: one GET through the same client
// (Tombstoned of a key that is not there).
func BenchmarkRawRoundTrip(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Tombstoned(ctx, "none"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSharedRateLimit is what identity.session.rate_limit.shared adds to a runtime call: one
// GCRA script on the client's bucket (allowed every time: a rate no loop reaches). Compare
// BenchmarkRawRoundTrip.
func BenchmarkSharedRateLimit(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := s.Allow(ctx, "id:spiffe://keyfort.test/ns/prod/sa/gateway", 1e9, 1_000_000); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}
