package pgstore

import (
	"context"
	"fmt"

	"github.com/keyfort/keyfort/config"
	"github.com/keyfort/keyfort/internal/redact"
	"github.com/keyfort/keyfort/provider"
)

// SecretSource serves the secrets of logical keys (*catalog.Catalog is one).
type SecretSource interface {
	Secret(ctx context.Context, key string) (provider.Secret, error)
}

// Configured returns the Store configuration of a Keyfort configuration: identity.session.postgres_url,
// identity.session.postgres_migrate and, when identity.secrets.postgres_password is bound, the password from its provider (through
// secrets, whose cache serves it to every new connection, so a rotation in the backend reaches the
// connections opened after it). The password is resolved once here, so that a missing one fails
// naming its key. It is how provider-host serve and check, and any service that shares their store,
// connect alike.
func Configured(ctx context.Context, cfg *config.Config, secrets SecretSource) (Config, error) {
	if cfg.Session.PostgresURL == "" {
		return Config{}, fmt.Errorf("%w: identity.session.postgres_url is not set", provider.ErrInvalidConfig)
	}
	out := Config{URL: cfg.Session.PostgresURL, DisableMigration: cfg.Session.PostgresNoMigrate}
	if _, ok := cfg.Bindings["identity.secrets."+config.PostgresPasswordKey]; !ok {
		return out, nil
	}
	if _, err := secrets.Secret(ctx, config.PostgresPasswordKey); err != nil {
		return Config{}, fmt.Errorf("the PostgreSQL session store's password: %w", err)
	}
	out.Password = func(ctx context.Context) (string, error) {
		s, err := secrets.Secret(ctx, config.PostgresPasswordKey)
		if err != nil {
			return "", err
		}
		return s.Value.RevealString(), nil
	}
	return out, nil
}

// OpenConfigured connects to the Store of a Keyfort configuration (see Configured). Errors name
// identity.session.postgres_url, never the URL (it may hold a password).
func OpenConfigured(ctx context.Context, cfg *config.Config, secrets SecretSource) (*Store, error) {
	c, err := Configured(ctx, cfg, secrets)
	if err != nil {
		return nil, err
	}
	s, err := New(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("identity.session.postgres_url: %w", err)
	}
	return s, nil
}

// RedactedURL is u with its password (in the user part or a password parameter) masked, for logs
// and check output.
func RedactedURL(u string) string { return redact.URL(u, "postgres") }
