package pgtest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultURL is the server .ci/run provides.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// URL returns the admin connection URL after checking that the server answers.
func URL(tb testing.TB) string {
	tb.Helper()
	url := os.Getenv("KEYFORT_PG_URL")
	if url == "" {
		url = DefaultURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		if os.Getenv("KEYFORT_REQUIRE_SERVERS") == "1" {
			tb.Fatalf("PostgreSQL at %s: %v", url, err)
		}
		tb.Skipf("no PostgreSQL at %s: %v", url, err)
	}
	_ = conn.Close(ctx)
	return url
}
