// Package providertest is the conformance suite every Keyfort provider must pass, in the spirit of
// gocloud's drivertest and SPIRE's keymanagertest. An adapter's conformance test is a few lines:
//
//	func TestConformance(t *testing.T) {
//		providertest.Run(t, providertest.Config{
//			NewProvider: func(t *testing.T) provider.IdentitySecretMaterialProvider { ... },
//			KeySet: "signing", Secret: "db-password", SecretValue: []byte("..."),
//			Credentials: "orders", Missing: "no-such-thing",
//		})
//	}
//
// RunAllWays runs it three ways from one description (Ways): against the adapter in process, over the
// plugin transport in the test process (plugin.ServeInProcess), and against the built plugin binary
// (plugin.Launch). The suite checks key sets
// (active key present, kids unique, material signs and verifies), rotation visible to callers, missing
// material as provider.ErrNotFound naming the location, cancelled and expired contexts, concurrent use,
// credentials with renew and revoke, the closed provider, and that no secret value appears in any
// error string or fmt rendering.
package providertest
