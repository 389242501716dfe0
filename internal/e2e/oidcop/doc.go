// Package oidcop runs Keyfort's session library against a real OpenID Provider on loopback: the
// zitadel/oidc v3 example OP (Apache-2.0) in process, driven through the authorization-code flow over
// HTTP with its test user. It lives in its own module (internal/e2e) so that the OP's dependencies
// never enter the library's module graph; scripts/test.sh runs it.
package oidcop
