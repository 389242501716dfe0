// Package gcp is the Google Cloud Secret Manager provider (cloud.google.com/go/secretmanager), served
// by "provider-host plugin gcp".
//
// Locations: projects/P/secrets/S (the latest version) or projects/P/secrets/S/versions/N (pinned),
// with an optional JSON field: projects/P/secrets/S#client_id.
//
//   - SigningKeys: the newest enabled version signs; older enabled versions verify (at most
//     max_verification_keys); disabled and destroyed versions never verify. A version's payload is a
//     PEM private key, a JSON object with private_key or secret (HS256) and optionally algorithm,
//     not_before, not_after, or a raw HS256 secret ("base64:" prefix allowed).
//   - Secret: the payload, or one field of its JSON.
//   - Credentials: a JSON secret with username and password; other fields become extra fields.
//
// Authentication is Application Default Credentials, or credentials_file, which must hold credentials
// of credentials_type (service_account unless set; a file of another type is refused); endpoint overrides the
// service address (private service connect, or an emulator with insecure_plaintext). Errors are
// classified from gRPC codes and name the resource, never the payload.
package gcp
