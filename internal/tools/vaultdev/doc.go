// Command vault is HashiCorp Vault v1.21.0 (BSL 1.1) built from its Go module, for Keyfort's tests
// only: they start it as a dev server on loopback. It lives in a module of its own so that Vault never
// enters the library's dependency graph. Build it with scripts/vault-dev.sh, which caches the binary.
package main
