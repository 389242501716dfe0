// Package dpop binds Keyfort's tokens to a key their client holds, by DPoP proofs (RFC 9449): the
// sender constraint for clients without certificates (browsers, mobile apps, workloads outside the
// mesh), where mutual TLS binds those with certificates.
//
// A client holds a Key (an EdDSA, ES256 or RS256 private key) and sends, with each call, a proof: a
// short-lived JWT it signs with that key, naming the call's method and URL, carrying the public key,
// and, with an access token, that token's hash. The identity runtime binds a session started with a
// proof to the key's thumbprint (RFC 7638): its refresh and access tokens name the client
// "dpop:<thumbprint>" (Identity), and only a call that proves possession of that key can use them.
// A stolen token is useless without the key, which never leaves the client.
//
// Verifier checks proofs: compact JWS in canonical base64url, size capped before parsing; a header of
// exactly typ "dpop+jwt", alg and a public jwk whose type matches alg (no kid, jku, x5u, x5c or crit:
// nothing points elsewhere); the signature; htm and htu equal to the call's (the URL compared without
// query and fragment, scheme and host case-insensitively, default ports dropped); iat within MaxAge in
// the past and Skew in the future; ath the hash of the presented access token; and jti never seen
// before within the proof's life (a bounded replay cache per Verifier: see Config.MaxProofs).
//
// For gRPC, a call's method is POST and its URL "https://" + :authority + the full method name
// (GRPCURL), as grpc-go names a call to per-call credentials. Key.Credentials puts proofs on a
// client's calls; identityclient does it for a session's own.
//
// Server nonces (RFC 9449 §8, §9) are optional: with Config.Nonces, a proof must also carry a nonce
// the server issued (Nonces: stateless, the same at every replica with the same secret), and one
// without the current nonce is refused with ErrUseNonce; the server sends Verifier.Nonce with the
// refusal (NonceHeader, DPoP-Nonce in HTTP). A Key keeps the nonces servers send (SetNonce) and puts
// them in its proofs; Key.Call, UnaryClientInterceptor and StreamClientInterceptor learn them from
// gRPC answers and call once more after a refusal.
package dpop
