// Package grpcauth guards a gRPC server with Keyfort sessions: unary and stream server interceptors
// take the caller's token from "authorization: Bearer …" or "x-prism-token" (names configurable),
// refuse more than one credential, bound the metadata they read, find or create the session
// (session.Cache) and put it in the handler's context (session.FromContext). A stream's context is
// cancelled when its session ends. Failures are codes.Unauthenticated with a generic message; the
// reason goes to the log, never to the caller. A disabled mode passes everything through, and method
// selectors exempt methods (health checks, reflection).
//
// A Guard (New) also has a tap handle, a fast path run by grpc-go before the stream exists: for a
// call on a cached session it reads the credential headers in place and hands the session to the
// interceptors, which then skip their own lookup. Guard.ServerOptions installs all three.
//
// A session whose access token is bound to a client (session.Config.BindAccessTokens; its
// Principal.Client) is served only to a caller presenting, over mutual TLS, a certificate of that
// client's identity (session.Session.CheckClient), on both paths; another caller is refused and
// the refusal logged as a warning naming both identities. The server must ask for client
// certificates (tls.Config.ClientAuth) for such tokens to be served at all — or, behind a sidecar
// that terminates mutual TLS, name the caller with Config.ClientIdentity (ForwardedClientCert reads
// Envoy's x-forwarded-client-cert). A session bound to a DPoP key (session/dpop) is served only to
// a call carrying a fresh proof of that key for the call and its token (Config.DPoP verifies it; in
// the interceptors, not the tap handle).
package grpcauth
