// Package capfetch fetches small documents (OIDC discovery, JWKS) over HTTP with the limits every
// caller in Keyfort needs: a client that follows no redirect, a response size cap checked while
// reading, and the rule that a document URL is https unless it is on loopback (tests).
package capfetch
