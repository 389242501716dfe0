// Package vaulttest starts a real HashiCorp Vault dev server on loopback for tests. The binary comes
// from $KEYFORT_VAULT_BIN (scripts/test.sh sets it from scripts/vault-dev.sh). Without it, tests skip
// (they fail instead when $KEYFORT_REQUIRE_SERVERS is 1, as in CI).
package vaulttest
