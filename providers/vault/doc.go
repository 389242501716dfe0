// Package vault is the HashiCorp Vault provider (github.com/hashicorp/vault/api), served by
// "provider-host plugin vault".
//
// Locations (the part after "vault:" in a binding):
//
//	kv:MOUNT/PATH           a key set from KV v2: each live version of the secret is a key (fields
//	                        private_key (PEM) or secret (HS256, raw or "base64:"), optional algorithm,
//	                        not_before, not_after); the newest live version signs, older ones verify.
//	transit:MOUNT/KEY       a key set from Transit (ed25519, ecdsa-p256, rsa-2048+): public keys only;
//	                        signing goes through the provider.Signer capability, so the private key
//	                        never leaves Vault; rotation in Transit shows up as a new kid.
//	[kv:]MOUNT/PATH[#FIELD] a secret from KV v1 or v2 (detected per mount); FIELD defaults to "value",
//	                        or to the only field.
//	PATH                    credentials: any path whose read returns username/password (or token) and
//	                        a lease, e.g. database/creds/ROLE (dynamic) or database/static-creds/ROLE.
//
// Authentication: token, AppRole, Kubernetes or JWT for the provider's own identity (renewed, and
// redone before the token's max TTL); and, for per-session credentials, the caller's own OIDC JWT
// exchanged through a JWT auth role (identity_auth): one Vault token per session, whose remaining life
// caps every lease renewed under it. Errors are classified from HTTP status (403 permission denied,
// 404 not found, 5xx and connection failures unavailable) and name the path, never a token.
package vault
