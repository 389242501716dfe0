// Package httpauth guards an HTTP server with Keyfort sessions, under the rules grpcauth applies to
// gRPC servers (the same code decides both): the caller's token from "Authorization: Bearer …" or
// "X-Prism-Token" (names configurable), exactly one credential, bounded; the session found or
// created (session.Cache) and put in the request's context (session.FromContext), which is
// cancelled when the session ends; a token bound to a client (session.Principal.Client) served only
// to that client (its TLS client certificate, or a sidecar's x-forwarded-client-cert with
// ForwardedClientCert), or, bound to a DPoP key, to a request with a fresh proof of it
// (Config.DPoP). Refusals are 401 with a generic body and "WWW-Authenticate: Bearer" (and, with
// Config.DPoP, a DPoP challenge naming the algorithms it verifies, RFC 9449 §7.1; use_dpop_nonce
// with the nonce in DPoP-Nonce when its Verifier requires nonces), or 503 when the session store
// cannot answer; the reason goes to the log and to
// keyfort_guard_refused_total. Exempt paths (probes) and a disabled mode pass through.
package httpauth
