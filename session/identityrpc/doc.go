// Package identityrpc serves session.Manager as the gRPC service keyfort.identity.v1.IdentityRuntimeService
// (StartIdentitySession, RefreshIdentitySession, EndIdentitySession, IssueIdentityToken,
// EvaluateIdentityPolicy). Token failures are codes.Unauthenticated with a generic message (the reason
// goes to the log); store failures are codes.Unavailable: the service fails closed.
package identityrpc
