// Package identityv1 is the generated Go code of Keyfort's identity runtime service,
// keyfort.identity.v1 (proto/keyfort/identity/v1/identity.proto): the client a backend-for-frontend
// or any Go service uses to start, refresh and end sessions with a running provider-host serve.
//
//	cc, err := grpc.NewClient("keyfort.internal:9090", grpc.WithTransportCredentials(creds))
//	rt := identityv1.NewIdentityRuntimeServiceClient(cc)
//	started, err := rt.StartIdentitySession(ctx, &identityv1.StartIdentitySessionRequest{
//		IdentityProvider: "google", ExternalToken: idToken})
//
// Regenerate with scripts/genproto.sh; the service itself is session/identityrpc.
package identityv1
