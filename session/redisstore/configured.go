package redisstore

import (
	"context"
	"fmt"
	"net/url"

	"github.com/keyfort/keyfort/config"
	"github.com/keyfort/keyfort/provider"
)

// SecretSource serves the secrets of logical keys (*catalog.Catalog is one).
type SecretSource interface {
	Secret(ctx context.Context, key string) (provider.Secret, error)
}

// Configured returns the Store configuration of a Keyfort configuration: identity.session.redis_url,
// identity.session.redis_tls, identity.session.redis_allow_eviction and, when identity.secrets.redis_password is bound, the password from
// its provider (through secrets, whose cache serves it to every new connection, so a rotation in the
// backend reaches the connections opened after it; the user name stays the URL's). The password is
// resolved once here, so that a missing one fails naming its key. It is how provider-host serve and
// check, and any service that shares their store, connect alike.
func Configured(ctx context.Context, cfg *config.Config, secrets SecretSource) (Config, error) {
	if cfg.Session.RedisURL == "" {
		return Config{}, fmt.Errorf("%w: identity.session.redis_url is not set", provider.ErrInvalidConfig)
	}
	t := cfg.Session.RedisTLS
	out := Config{URL: cfg.Session.RedisURL, AllowEviction: cfg.Session.RedisAllowEviction,
		TLS: TLS{CAFile: t.CAFile, ServerName: t.ServerName, CertFile: t.CertFile, KeyFile: t.KeyFile}}
	if _, ok := cfg.Bindings["identity.secrets."+config.RedisPasswordKey]; !ok {
		return out, nil
	}
	if _, err := secrets.Secret(ctx, config.RedisPasswordKey); err != nil {
		return Config{}, fmt.Errorf("the Redis session store's password: %w", err)
	}
	var user string
	if u, err := url.Parse(cfg.Session.RedisURL); err == nil {
		switch {
		case IsSentinelURL(cfg.Session.RedisURL): // the URL's user is the Sentinels'
			user = u.Query().Get("username")
		case u.User != nil:
			user = u.User.Username()
		}
	}
	out.Credentials = func(ctx context.Context) (string, string, error) {
		s, err := secrets.Secret(ctx, config.RedisPasswordKey)
		if err != nil {
			return "", "", err
		}
		return user, s.Value.RevealString(), nil
	}
	return out, nil
}

// OpenConfigured connects to the Store of a Keyfort configuration (see Configured). Errors name
// identity.session.redis_url, never the URL (it may hold a password).
func OpenConfigured(ctx context.Context, cfg *config.Config, secrets SecretSource) (*Store, error) {
	c, err := Configured(ctx, cfg, secrets)
	if err != nil {
		return nil, err
	}
	s, err := New(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("identity.session.redis_url: %w", err)
	}
	return s, nil
}
