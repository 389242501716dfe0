// Package token signs and verifies Keyfort's own session tokens: compact JWS (JWT) access and refresh
// tokens signed with the active key of a provider key set, the kid in the header.
//
// Verification is strict by construction, not by configuration:
//
//   - size is capped before anything is parsed, and a token is exactly three base64url segments in
//     canonical form (no padding, no stray bits), so one token has one encoding;
//   - the header holds exactly alg, kid and typ; anything else (crit, jku, x5u, jwk, x5c, zip, enc ...)
//     is refused, so nothing in a token can point verification at another key;
//   - the key is chosen by kid from the provider's key set, and the algorithm is the key's own: a
//     header alg that differs (none, HS256 on an RSA key, ...) is refused before any cryptography;
//   - ECDSA signatures are 64 bytes r||s with r and s in [1, n-1] and s in the lower half (Keyfort signs
//     low-s), so a signature has one form;
//   - typ distinguishes access from refresh tokens, and exp is required; nbf and iat allow a bounded
//     clock skew.
//
// A Codec is safe for concurrent use. Parsed keys are cached per key set version, so verification
// costs one map lookup and the signature check.
package token
