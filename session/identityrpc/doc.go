// Package identityrpc serves session.Manager as the gRPC service keyfort.identity.v1.IdentityRuntimeService
// (StartIdentitySession, RefreshIdentitySession, EndIdentitySession, IssueIdentityToken,
// EvaluateIdentityPolicy). Token failures are codes.Unauthenticated with a generic message (the reason
// goes to the log); store failures are codes.Unavailable: the service fails closed. Every call that
// starts, refreshes or ends a session or issues a token leaves an audit record (Options.Audit), and
// every call is counted by method and outcome (keyfort_identity_calls_total).
//
// IntrospectIdentityToken tells services not written in Go whether an access token is active;
// Server.IntrospectionHandler gives the same answer in RFC 7662's HTTP form. Both name their
// callers by client certificate (Options.IntrospectionClients).
//
// Options.RateLimit bounds each client's calls (a token bucket per certificate identity, else per
// address; per replica, or for every replica together through a SharedRateLimiter such as
// redisstore.Store or pgstore.Store), applied by Server.UnaryServerInterceptor, which goes before the server's guard: build
// the service with New, install the interceptor, then RegisterOn the server.
//
// Options.DPoP binds a session started with a DPoP proof (session/dpop) to the key it proves,
// refresh and access tokens both; refreshing and ending it then take a proof of that key. Its
// answers say token_type DPoP or Bearer (RFC 9449 §5), and with a Verifier that requires nonces it
// refuses proofs without the current one (use_dpop_nonce, the nonce in the trailer). A bare token of
// IssueIdentityToken is bound to its caller when the request asks (bind_to_caller).
package identityrpc
