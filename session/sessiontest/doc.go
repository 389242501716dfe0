// Package sessiontest is the contract every session.Store passes: rotation, grace, reuse detection,
// revocation, expiry, tombstones, atomic rotation under concurrency, the revocation feed, and
// listing and revoking a subject's sessions (RunStoreTests); and the refresh benchmark every shared
// store runs (BenchRotate).
package sessiontest
