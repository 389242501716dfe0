package pgstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/pgstore"
	"github.com/keyfort/keyfort/session/sessiontest"
)

// TestSharedRateLimit: the shared rate limit's contract through two stores on one database and
// prefix (GCRA on the database's clock), and a database that cannot be reached is an error
// wrapping ErrStoreUnavailable.
func TestSharedRateLimit(t *testing.T) {
	ctx := context.Background()
	a, u := admin(t)
	p := prefix(t, a)
	one, two := open(t, pgstore.Config{URL: u, Prefix: p}), open(t, pgstore.Config{URL: u, Prefix: p})
	sessiontest.RunRateLimitTests(t, one, two, func() []string {
		rows, err := a.Query(ctx, "SELECT key FROM "+p+"rate_limits")
		if err != nil {
			t.Fatal(err)
		}
		keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return keys
	})
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	gone := open(t, pgstore.Config{Pool: pool, Prefix: p})
	pool.Close()
	if _, err := gone.Allow(ctx, "id:x", 1, 1); !errors.Is(err, session.ErrStoreUnavailable) {
		t.Errorf("Allow on a closed pool: %v, want ErrStoreUnavailable", err)
	}
}

// TestSharedDPoPReplay: the shared DPoP replay cache's contract through two stores on one
// database and prefix (rows of the unlogged rate_limits table, on the database's clock), and a
// database that cannot be reached is an error.
func TestSharedDPoPReplay(t *testing.T) {
	ctx := context.Background()
	a, u := admin(t)
	p := prefix(t, a)
	sessiontest.RunSharedReplayTests(t, open(t, pgstore.Config{URL: u, Prefix: p}), open(t, pgstore.Config{URL: u, Prefix: p}))
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	gone := open(t, pgstore.Config{Pool: pool, Prefix: p})
	pool.Close()
	if _, err := gone.FirstUse(ctx, "00", time.Now().Add(time.Minute)); !errors.Is(err, session.ErrStoreUnavailable) {
		t.Errorf("FirstUse on a closed pool: %v, want ErrStoreUnavailable", err)
	}
}
