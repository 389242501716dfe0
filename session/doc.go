// Package session is Keyfort's session library: what a Go service links to validate its callers,
// keep their sessions and issue its own tokens.
//
//   - Manager starts sessions on the strength of an identity provider's token (StartSession), issues
//     Keyfort's access and refresh tokens, rotates refresh tokens with reuse detection
//     (RefreshSession), ends sessions (Logout, EndSession), ends or lists every session of a subject
//     (EndSubjectSessions, SubjectSessions), issues bare tokens (IssueToken) and evaluates the
//     policy guardrail (EvaluatePolicy).
//   - Cache keeps the sessions of the tokens callers present, keyed by a keyed hash of the signed
//     part, with their backend credentials (renewed before expiry, revoked when the session ends);
//     FromContext hands a request its session. Authenticators turn a token into a Principal:
//     Manager (Keyfort's tokens, in the runtime), AccessVerifier (Keyfort's tokens elsewhere, with
//     public keys only) and IDTokens (an identity provider's tokens).
//   - Store keeps refresh-token families, tombstones and, through optional capabilities, a
//     revocation feed (RevocationFeed), a subject's sessions (SubjectRevoker, SubjectLister),
//     subject cuts (SubjectCutter), revoked signing keys (KeyRevoker, which RevokedKeys follows for
//     a Manager or an AccessVerifier) and a readiness ping (Pinger). MemoryStore serves one replica;
//     session/redisstore and session/pgstore serve many, and session/sessiontest is the contract
//     every Store passes.
//
// Sub-packages: session/token (Keyfort's own tokens), session/oidc (validation of incoming OIDC
// JWTs, with a test issuer in session/oidc/oidctest), session/grpcauth (the gRPC interceptors),
// session/httpauth (the same guard as net/http middleware), session/identityrpc (the
// IdentityRuntime service that provider-host serve runs) and session/identityclient (its client
// side: a session that refreshes itself and rides on gRPC calls as per-call credentials). Session.CheckClient enforces tokens bound
// to their client (Config.BindAccessTokens). With a TracerProvider, Manager and Cache make
// OpenTelemetry spans (SpanPrefix; names and outcomes, never a token or a subject).
// docs/sessions.md is the guide.
package session
