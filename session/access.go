package session

import (
	"context"
	"errors"
	"time"

	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/session/oidc"
	"github.com/keyfort/keyfort/session/token"
)

// AccessVerifierConfig configures an AccessVerifier.
type AccessVerifierConfig struct {
	// Issuer and Audience are the runtime's (identity.session.issuer and .audience; the audience
	// defaults to the issuer, as the runtime's does).
	Issuer, Audience string
	// Keys verify the tokens: token.NewJWKSKeys on the runtime's /.well-known/jwks.json gives public
	// keys only, so the verifying service holds no private key.
	Keys token.KeySource
	// Store is the runtime's shared store (its Redis): with it, a session whose family was revoked
	// (logout, refresh-token theft) is refused, and a Cache revalidates the sessions it keeps. Nil:
	// a token is good until it expires (access tokens live 15 minutes at most).
	Store Store
	// RevokedKeys, when set, is the deny list of the runtime's signing keys (NewRevokedKeys on the
	// Store): tokens a revoked key signed are refused at once, ahead of the key's removal from the
	// JWKS reaching this service. Nil: none is revoked.
	RevokedKeys *RevokedKeys
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// AccessVerifier authenticates Keyfort access tokens in a service other than the runtime that
// issued them: a guarded service whose callers present the access token StartIdentitySession gave
// them. It is a Cache's Authenticator and Revalidator. It is safe for concurrent use.
type AccessVerifier struct {
	codec    *token.Codec
	audience string
	store    Store
	revoked  *RevokedKeys
}

var (
	_ Authenticator = (*AccessVerifier)(nil)
	_ Revalidator   = (*AccessVerifier)(nil)
)

// NewAccessVerifier returns an AccessVerifier.
func NewAccessVerifier(cfg AccessVerifierConfig) (*AccessVerifier, error) {
	if cfg.Issuer == "" || cfg.Keys == nil {
		return nil, errors.New("session: AccessVerifierConfig needs Issuer and Keys")
	}
	if cfg.Audience == "" {
		cfg.Audience = cfg.Issuer
	}
	codec, err := token.New(token.Config{Issuer: cfg.Issuer, Keys: cfg.Keys, Now: cfg.Now, Revoked: cfg.RevokedKeys.revokedFunc()})
	if err != nil {
		return nil, err
	}
	return &AccessVerifier{codec: codec, audience: cfg.Audience, store: cfg.Store, revoked: cfg.RevokedKeys}, nil
}

// Authenticate implements Authenticator: the token's signature, type (access), issuer, audience
// and validity, and, with a Store, that its session was not ended.
func (a *AccessVerifier) Authenticate(ctx context.Context, raw string) (Principal, error) {
	cl, err := a.codec.Verify(ctx, raw, token.TypeAccess, a.audience)
	if err != nil {
		if errors.Is(err, token.ErrUnknownKey) || isTokenError(err) {
			return Principal{}, unauthenticated("access token: %v", err)
		}
		return Principal{}, err // the key set is unavailable: not the caller's fault
	}
	p := principalOf(cl, raw)
	if err := a.Revalidate(ctx, p); err != nil {
		return Principal{}, err
	}
	return p, nil
}

// Revalidate implements Revalidator: whether the signing key of p's token was revoked, and with a
// Store, whether its session family was.
func (a *AccessVerifier) Revalidate(ctx context.Context, p Principal) error {
	if err := a.revoked.keyRevoked(p.Identity); err != nil {
		return err
	}
	if a.store == nil {
		return nil
	}
	return familyLive(ctx, a.store, p.Family)
}

// isTokenError reports whether err is the token's fault (any of token's Err* reasons).
func isTokenError(err error) bool {
	for _, reason := range []error{token.ErrMalformed, token.ErrAlgorithm, token.ErrSignature, token.ErrExpired,
		token.ErrNotYetValid, token.ErrWrongType, token.ErrWrongIssuer, token.ErrWrongAudience, token.ErrRevokedKey} {
		if errors.Is(err, reason) {
			return true
		}
	}
	return false
}

// IDTokens authenticates an identity provider's tokens (OIDC ID tokens, verified by an
// oidc.Verifier) for a guarded service that accepts them directly rather than Keyfort's access
// tokens: a Cache's Authenticator. The Principal names the identity provider as IdP (the name
// under identity.secrets.oidc, as in the runtime's sessions) and carries the token's iat, so a
// cut of its subject (EndSubjectSessions) ends its session.
type IDTokens struct {
	IdP      string
	Verifier *oidc.Verifier
}

var _ Authenticator = IDTokens{}

// Authenticate implements Authenticator. An identity provider that cannot be reached is not the
// caller's fault: that error does not wrap ErrUnauthenticated.
func (a IDTokens) Authenticate(ctx context.Context, raw string) (Principal, error) {
	t, err := a.Verifier.Verify(ctx, raw)
	if err != nil {
		if errors.Is(err, oidc.ErrUnavailable) {
			return Principal{}, err
		}
		return Principal{}, unauthenticated("%s token: %v", a.IdP, err)
	}
	return Principal{Subject: t.Subject, IdP: a.IdP, ExpiresAt: t.ExpiresAt, IssuedAt: t.IssuedAt,
		Identity: provider.SensitiveString(raw)}, nil
}
