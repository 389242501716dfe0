// Package pgtest finds the PostgreSQL server the tests use: $KEYFORT_PG_URL, by default the superuser
// on 127.0.0.1:5432 (trust authentication, as .ci/run sets it up). Without a reachable server, tests
// skip (they fail instead when $KEYFORT_REQUIRE_SERVERS is 1, as in CI). SchemaURL gives a test a
// schema of its own on that server; StartPair starts a primary and a streaming standby of the
// test's own, for failover tests.
package pgtest
