// Package guardrules holds what Keyfort's guards share — grpcauth's interceptors and tap handle,
// httpauth's middleware — so that no path accepts a call another refuses: the credential rules
// (one credential, a bearer token or a bare one, bounded), the exemption selectors, the parsing of
// a sidecar's x-forwarded-client-cert header, and the refusal counter.
package guardrules
