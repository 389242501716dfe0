// Package plugin is Keyfort's out-of-process transport: providers run as hashicorp/go-plugin gRPC plugins
// with AutoMTLS, speaking the versioned protocol keyfort.provider.v1 (proto/keyfort/provider/v1).
//
// A plugin author's main is a few lines:
//
//	func main() { plugin.Serve(myProvider) }              // a ready provider, or
//	func main() { plugin.ServeFactory(myprovider.New) }   // built from the host's settings
//
// The host side is [Launch]: it starts the plugin binary (optionally pinned by SHA-256), configures it,
// and returns a [Process] that implements provider.IdentitySecretMaterialProvider and supervises the
// process: a plugin that dies is restarted with exponential backoff, and idempotent calls (SigningKeys,
// Secret, Renew, Revoke, Sign, Health) are retried on the fresh process. Credentials are not retried,
// because a lost answer may already have created a lease. Callers' deadlines and cancellation cross the
// process boundary. Errors map to gRPC codes and back, so errors.Is(err, provider.ErrNotFound) works on
// the host exactly as in process. The caller's trace context crosses too (W3C Trace Context in the
// call's metadata), so a plugin's spans join the host's trace; [WithTracerProvider] makes the plugin
// record a server span per call.
package plugin
