// Package env is a provider that reads material from environment variables, at every call (so a
// restarted process picks up new values; the provider.Client's cache decides how often it is asked).
//
// Locations are variable names. A location such as "oidc/google/client_id" (from a default binding) is
// normalised to OIDC_GOOGLE_CLIENT_ID: '/', '.' and '-' become '_' and letters are upper-cased; the
// configured prefix is prepended.
//
//   - Secret(NAME): the value of NAME. A value that starts with "base64:" is decoded (standard
//     encoding, padded or not). A variable that is unset or empty is not found.
//   - SigningKeys(NAME): NAME holds the active key: a PEM private key (EdDSA, ES256 or RS256, inferred
//     from the key, or fixed by NAME_ALG) or an HS256 secret (raw or "base64:", at least 32 bytes).
//     NAME_PREVIOUS optionally holds keys that still verify: concatenated PEM blocks, or HS256 secrets
//     one per line.
//   - Credentials(ROLE): static credentials from ROLE_USERNAME with ROLE_PASSWORD or ROLE_TOKEN; every
//     other ROLE_* variable becomes an extra field (ROLE_HOST → "host"). They carry no lease.
package env
