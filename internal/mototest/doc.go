// Package mototest runs moto (the AWS emulator, Apache-2.0, from the machine's Python) on loopback for
// tests: one server per test binary, reset between tests. Without moto, tests skip (they fail instead
// when $KEYFORT_REQUIRE_SERVERS is 1, as in CI).
package mototest
