// Package testnet holds the network helpers the test-server packages (internal/redistest,
// internal/pgtest) share.
package testnet
