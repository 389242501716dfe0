package pgstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/pgstore"
)

// TestSharedRateLimit: two stores on one database and prefix (two replicas) draw from one bucket
// per client: the burst is shared, the call past it is refused on either, another client has its
// own, a bucket refills at its rate (on the database's clock), the client's name is not stored as
// given, and a database that cannot be reached is an error wrapping ErrStoreUnavailable.
func TestSharedRateLimit(t *testing.T) {
	ctx := context.Background()
	a, u := admin(t)
	p := prefix(t, a)
	one, two := open(t, pgstore.Config{URL: u, Prefix: p}), open(t, pgstore.Config{URL: u, Prefix: p})
	allow := func(s *pgstore.Store, key string, perSecond float64, burst int) bool {
		t.Helper()
		ok, err := s.Allow(ctx, key, perSecond, burst)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	const gw = "id:spiffe://keyfort.test/ns/prod/sa/gateway"
	for i, s := range []*pgstore.Store{one, two, one} {
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
	rows, err := a.Query(ctx, "SELECT key FROM "+p+"rate_limits")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		n++
		if strings.Contains(k, "spiffe") || strings.Contains(k, "10.0.0.7") {
			t.Errorf("a client's name is stored as given: %s", k)
		}
	}
	if rows.Err() != nil || n != 3 {
		t.Errorf("bucket rows: %d, %v", n, rows.Err())
	}
	if _, err := one.Allow(ctx, gw, 0, 3); err == nil {
		t.Error("a rate of zero was accepted")
	}
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	gone := open(t, pgstore.Config{Pool: pool, Prefix: p})
	pool.Close()
	if _, err := gone.Allow(ctx, gw, 1, 1); !errors.Is(err, session.ErrStoreUnavailable) {
		t.Errorf("Allow on a closed pool: %v, want ErrStoreUnavailable", err)
	}
}
