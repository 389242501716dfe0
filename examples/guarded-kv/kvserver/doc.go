// Package kvserver is the guarded key-value service of examples/guarded-kv, following the classic
// integration path: a gRPC interceptor validates the caller's OIDC JWT, finds or creates its session,
// and the handler takes the session (session.FromContext) and the backend credentials issued to it
// (for Vault: the caller's JWT exchanged through JWT auth), injecting them into its backend
// configuration. With authentication disabled the same handler runs on the service's own credentials.
package kvserver
