// Package oidc validates incoming OIDC JWTs (ID tokens, or JWT access tokens) from an external
// identity provider such as Google: discovery, a JWKS cache refreshed on an unknown kid (shared by
// concurrent callers and rate-limited, keeping the last good set on errors, with capped bodies and
// timeouts), an algorithm allow-list bound to each key's type, exact iss, aud containing ours (azp
// checked when there are several), exp required, nbf/iat with bounded skew, and typ.
//
// Before any cryptography a token must be at most MaxTokenSize bytes, exactly three canonical base64url
// segments, and carry a header with no field that could redirect verification (jwk, jku, x5u, x5c,
// crit, enc, zip, cty ...): keys come only from the issuer's JWKS, fetched from the jwks_uri that
// discovery at the configured issuer names. Signature checks use github.com/go-jose/go-jose/v4.
//
// A Verifier is safe for concurrent use.
package oidc
