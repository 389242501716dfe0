package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
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

// SchemaURL returns URL with a schema of the test's own as its search_path (created now, dropped
// when the test ends), so that what a store creates there (keyfort_* tables) is the test's alone.
func SchemaURL(tb testing.TB) string {
	tb.Helper()
	base := URL(tb)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatal(err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	schema := "kt_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		_ = admin.Close(ctx)
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		_ = admin.Close(context.Background())
	})
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
