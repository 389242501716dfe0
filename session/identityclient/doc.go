// Package identityclient is the client side of Keyfort's identity runtime: a Session starts (or
// resumes) a session with the runtime, hands out a valid access token — refreshing it ahead of its
// expiry with the session's refresh token, one refresh at a time however many goroutines ask, so
// that the runtime's reuse detection never mistakes the client for a thief — and puts it on every
// gRPC call to a guarded service as credentials.PerRPCCredentials, and on every HTTP request
// through Session.RoundTripper. A refresh the runtime refuses ends the Session (ErrEnded); one that
// fails otherwise is retried with backoff while the current token stays valid. With Config.DPoP
// the session is bound to a key the client holds (session/dpop), and every call to the runtime and
// to guarded services carries a fresh proof of it; tokens the runtime did not bind to the key are
// refused (ErrBinding), and servers' DPoP nonces are followed (Session.DialOptions for guarded
// connections). docs/sessions.md
// ("Calling guarded services") is the guide.
package identityclient
