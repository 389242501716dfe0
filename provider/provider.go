package provider

import "context"

// IdentitySecretMaterialProvider is the driver contract every adapter and the plugin client implement.
// Names and roles are locations within the provider ("kv/identity/signing", "GOOGLE_CLIENT_ID"); the
// mapping from Keyfort's logical keys to providers and locations is configuration, not the adapter's
// business.
//
// Implementations must be safe for concurrent use, honour ctx, return errors classified with
// [NewError] whose messages name the location and never a value, and return [ErrClosed] after Close.
// Callers should not use a driver directly: wrap it in a [Client].
type IdentitySecretMaterialProvider interface {
	// SigningKeys returns the key set at name: the active key that signs and the keys that verify.
	SigningKeys(ctx context.Context, name string) (KeySet, error)
	// Secret returns one opaque value.
	Secret(ctx context.Context, name string) (Secret, error)
	// Credentials returns backend credentials for a role; dynamic ones carry a lease.
	Credentials(ctx context.Context, req CredentialRequest) (Credentials, error)
	// Renew extends a lease and returns it as renewed. Static credentials' zero lease is returned as is.
	Renew(ctx context.Context, lease Lease) (Lease, error)
	// Revoke ends a lease. Revoking an unknown or already revoked lease is not an error.
	Revoke(ctx context.Context, lease Lease) error
	// Close releases the provider's resources. Calls after Close return ErrClosed; Close is idempotent.
	Close() error
}

// Signer is the optional capability of providers whose private keys never leave the backend (Vault
// Transit, an HSM, a cloud KMS). The key set then carries public keys only.
type Signer interface {
	// Sign signs payload (the JWS signing input, not a digest) with key kid of key set name and
	// returns the JWS signature bytes for the key's algorithm.
	Sign(ctx context.Context, name, kid string, payload []byte) ([]byte, error)
}

// HealthChecker is the optional capability of providers that can report their backend's health.
type HealthChecker interface {
	// Health returns nil when the backend answers, or a classified error.
	Health(ctx context.Context) error
}

// KeyRotator is the optional capability of providers that can create a new active key themselves
// (the memory provider, Vault Transit). Rotation keeps the previous keys for verification.
type KeyRotator interface {
	// RotateSigningKey creates a new key in set name, makes it active and returns the new set.
	RotateSigningKey(ctx context.Context, name string) (KeySet, error)
}

// Watcher is the optional capability of providers that learn of changes to their material as they
// happen (the backend's notifications, a watched file, a rotation they made themselves). A [Client]
// over a Watcher refetches changed material at once instead of serving it until its cache TTL ends;
// a rotation then reaches every caller in milliseconds.
type Watcher interface {
	// Watch calls fn with Change{} (an empty name: anything may have changed) once the watch is
	// established, then with each location whose material changes, until ctx ends or the watch
	// fails; it returns why it ended. fn is called from one goroutine at a time and must not block.
	Watch(ctx context.Context, fn func(Change)) error
}

// Change says that the material at a location changed.
type Change struct {
	// Name is the location. Empty: anything may have changed (the watch was just established, or
	// changes were dropped for a watcher that fell behind).
	Name string
}
