// Package provider is Keyfort's provider-neutral contract for identity secret material.
//
// It holds three things and imports no adapter and no cloud SDK:
//
//   - the small driver contract, [IdentitySecretMaterialProvider], that every adapter and the plugin
//     transport implement, plus optional capabilities ([Signer], [HealthChecker], [KeyRotator]) found by
//     type assertion;
//   - the material types ([KeySet], [Key], [Secret], [Credentials], [Lease]) and [Sensitive], the byte
//     container that keeps secret values out of logs, errors and fmt output;
//   - [Client], the one concrete type every caller uses over any adapter: closed flag, per-call timeout,
//     error classification with the provider's name added once, a TTL cache with single-flight refresh
//     and a stale-on-error budget, Prometheus metrics, and OpenTelemetry spans for the calls that
//     reach the provider (with ClientConfig.TracerProvider).
//
// Errors form a closed set of sentinels ([ErrNotFound], [ErrPermissionDenied], [ErrInvalidArgument],
// [ErrInvalidConfig], [ErrUnavailable], [ErrUnimplemented], [ErrClosed], [ErrInternal]). Adapters classify
// once at their edge with [NewError]; the result satisfies errors.Is against the sentinel and still
// unwraps to the backend's own error. The plugin transport maps them to gRPC codes and back, so errors.Is
// works the same on the host side of a plugin as in process.
package provider
