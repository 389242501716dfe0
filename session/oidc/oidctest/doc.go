// Package oidctest is a test OIDC issuer served over HTTP on loopback: discovery, a JWKS endpoint whose
// keys tests add, remove and corrupt, and tokens signed with go-jose, including the malformed ones a real
// provider will not mint.
package oidctest
