package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultURL is the server .ci/run provides.
const DefaultURL = "redis://127.0.0.1:6379/0"

// URL is the test server's URL: KEYFORT_REDIS_URL, else DefaultURL.
func URL() string {
	if u := os.Getenv("KEYFORT_REDIS_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// DBURL is URL on database db: a package whose tests run services on the default key prefix
// takes a database of its own, so that their revocation feed (a channel per database) is not
// heard by another package's tests running at the same time.
func DBURL(db int) string {
	u, err := url.Parse(URL())
	if err != nil {
		return URL()
	}
	u.Path = "/" + strconv.Itoa(db)
	return u.String()
}

// Client returns a client to the test server and a key prefix unique to this test; keys under the
// prefix are deleted when the test ends.
func Client(tb testing.TB) (*redis.Client, string) {
	tb.Helper()
	url := URL()
	opts, err := redis.ParseURL(url)
	if err != nil {
		tb.Fatalf("KEYFORT_REDIS_URL: %v", err)
	}
	c := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		if os.Getenv("KEYFORT_REQUIRE_SERVERS") == "1" {
			tb.Fatalf("Redis at %s: %v", url, err)
		}
		tb.Skipf("no Redis at %s: %v", url, err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "keyfort-test:" + hex.EncodeToString(b) + ":"
	tb.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		_ = c.Close()
	})
	return c, prefix
}

// Lost returns a new client to the test server and a function that closes it: a store made on
// the client while it is open and used after the call meets a connection that is gone (every
// command fails), as after an outage, without touching the server others share.
func Lost(tb testing.TB) (*redis.Client, func()) {
	tb.Helper()
	opts, err := redis.ParseURL(URL())
	if err != nil {
		tb.Fatalf("KEYFORT_REDIS_URL: %v", err)
	}
	c := redis.NewClient(opts)
	return c, func() { _ = c.Close() }
}

// ACLUser creates a Redis ACL user on the server of admin with password pw, allowed only the keys
// matching keys (a glob) and no pub/sub channel but those of rules (such as "&keyfort:revocations"),
// and deletes it when the test ends. The user's name derives from name.
func ACLUser(tb testing.TB, admin *redis.Client, name, keys, pw string, rules ...string) string {
	tb.Helper()
	user := strings.TrimSuffix(strings.ReplaceAll(name, ":", "-"), "-")
	ctx := context.Background()
	args := append([]any{"ACL", "SETUSER", user, "reset", "on", ">" + pw, "~" + keys, "+@all"}, toAny(rules)...)
	if err := admin.Do(ctx, args...).Err(); err != nil {
		tb.Fatalf("ACL SETUSER: %v", err)
	}
	tb.Cleanup(func() { admin.Do(context.Background(), "ACL", "DELUSER", user) })
	return user
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
