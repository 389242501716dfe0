// Package sessiontest is the contract every session.Store passes: rotation, grace, reuse detection,
// revocation, expiry, tombstones, atomic rotation under concurrency, the revocation feed, and
// listing and revoking a subject's sessions (RunStoreTests); the refresh benchmark every shared
// store runs (BenchRotate); and Managers for tests: one on an in-memory key and a test identity
// provider (NewManager), and one binding access tokens to their client, for the guards' tests
// (BoundManager).
package sessiontest
