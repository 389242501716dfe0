// Package redistest finds the Redis server the tests use: $KEYFORT_REDIS_URL, by default
// redis://127.0.0.1:6379/0 (as .ci/run provides). Without a reachable server, tests skip (they fail
// instead when $KEYFORT_REQUIRE_SERVERS is 1, as in CI). Each test gets its own key prefix.
package redistest
