// Package sessiontest is the contract every session.Store passes: rotation, grace, reuse detection,
// revocation, expiry, tombstones, and atomic rotation under concurrency.
package sessiontest
