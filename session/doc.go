// Package session is Keyfort's session library. Its parts live in sub-packages:
//
//   - session/token: Keyfort's own access and refresh tokens, signed with the provider's active key;
//   - session/oidc: validation of incoming OIDC JWTs (discovery, JWKS, claims), with a test issuer in
//     session/oidc/oidctest.
//
// Sessions, refresh-token families, the gRPC interceptors and the IdentityRuntime service follow (see
// issue 3 and docs/decisions.md).
package session
