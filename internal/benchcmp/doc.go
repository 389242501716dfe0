// Package benchcmp benchmarks Keyfort's own-token codec against the JWT libraries a Go service would
// otherwise use — golang-jwt v5, go-jose v4 and lestrrat-go/jwx v3 — verifying and signing the same
// tokens with the same keys in one run, so that the ratios in docs/performance.md compare like with
// like. It is its own module so that those libraries stay out of Keyfort's dependency graph; it has
// no non-test code.
package benchcmp
