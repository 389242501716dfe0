package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/keyfort/keyfort/provider"
)

// session is a Vault token obtained with a caller's identity JWT; the leases read with it die with it.
type session struct {
	client  *api.Client
	expires time.Time
}

// Credentials reads credentials at the location (database/creds/ROLE, database/static-creds/ROLE, or
// any path answering username/password or token). With req.Identity, the read happens under a
// per-session token obtained through identity_auth.
func (p *Provider) Credentials(ctx context.Context, req provider.CredentialRequest) (provider.Credentials, error) {
	location := req.Role
	if err := p.check(ctx, location); err != nil {
		return provider.Credentials{}, err
	}
	client := p.client
	var sess *session
	if !req.Identity.IsZero() {
		var err error
		if sess, err = p.sessionLogin(ctx, location, req.Identity); err != nil {
			return provider.Credentials{}, err
		}
		client = sess.client
	}
	path := strings.Trim(location, "/")
	s, err := client.Logical().ReadWithContext(ctx, path)
	if err == nil && (s == nil || s.Data == nil) {
		err = provider.NewError(provider.ErrNotFound, location, fmt.Errorf("no credentials at %s", path))
	}
	if err != nil {
		if sess != nil {
			_ = sess.client.Auth().Token().RevokeSelfWithContext(context.WithoutCancel(ctx), "")
		}
		return provider.Credentials{}, classify(location, "GET", path, err)
	}
	c := provider.CredentialsFromFields(location, s.Data)
	if c.Username == "" && c.Token.IsZero() {
		if sess != nil {
			_ = sess.client.Auth().Token().RevokeSelfWithContext(context.WithoutCancel(ctx), "")
		}
		return provider.Credentials{}, provider.NewError(provider.ErrInvalidConfig, location,
			fmt.Errorf("%s answered neither username nor token (fields: %v)", path, slices.Sorted(maps.Keys(s.Data))))
	}
	if s.LeaseID != "" {
		ttl := time.Duration(s.LeaseDuration) * time.Second
		if sess != nil {
			ttl = min(ttl, time.Until(sess.expires))
			p.mu.Lock()
			p.sessions[s.LeaseID] = sess
			p.mu.Unlock()
		}
		c.Lease = provider.Lease{ID: s.LeaseID, TTL: ttl, IssuedAt: p.now(), Renewable: s.Renewable}
	} else if sess != nil {
		// Static credentials need no session token.
		_ = sess.client.Auth().Token().RevokeSelfWithContext(context.WithoutCancel(ctx), "")
	}
	return c, nil
}

func (p *Provider) sessionLogin(ctx context.Context, location string, identity provider.Sensitive) (*session, error) {
	ia := p.s.IdentityAuth
	if ia == nil {
		return nil, provider.NewError(provider.ErrInvalidArgument, location,
			errors.New("an identity token was given but identity_auth is not configured"))
	}
	loginPath := ia.Path + "/login"
	c, err := p.client.Clone()
	if err != nil {
		return nil, provider.NewError(provider.ErrInternal, location, err)
	}
	c.ClearToken()
	s, err := c.Logical().WriteWithContext(ctx, loginPath, map[string]any{"role": ia.Role, "jwt": identity.RevealString()})
	if err != nil {
		return nil, classify(location, "PUT", loginPath, err)
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return nil, provider.NewError(provider.ErrPermissionDenied, location, errors.New("identity login returned no token"))
	}
	if err := checkServiceToken(s); err != nil {
		return nil, provider.NewError(provider.ErrInvalidConfig, loginPath, err)
	}
	c.SetToken(s.Auth.ClientToken)
	return &session{client: c, expires: p.now().Add(time.Duration(s.Auth.LeaseDuration) * time.Second)}, nil
}

// Renew renews a lease. Under a per-session token the token is renewed first, and the lease's TTL is
// capped by the token's remaining life: a lease cannot outlive its token, so a shrinking TTL tells the
// caller to fetch fresh credentials (with a fresh login) before the token's max TTL.
func (p *Provider) Renew(ctx context.Context, l provider.Lease) (provider.Lease, error) {
	if p.closed.Load() {
		return provider.Lease{}, provider.NewError(provider.ErrClosed, l.ID, nil)
	}
	if l.IsZero() {
		return l, nil
	}
	p.mu.Lock()
	sess := p.sessions[l.ID]
	p.mu.Unlock()
	client := p.client
	if sess != nil {
		client = sess.client
		t, err := client.Auth().Token().RenewSelfWithContext(ctx, 0)
		if err != nil {
			return provider.Lease{}, renewError(l.ID, "auth/token/renew-self", err)
		}
		if t != nil && t.Auth != nil {
			p.mu.Lock()
			sess.expires = p.now().Add(time.Duration(t.Auth.LeaseDuration) * time.Second)
			p.mu.Unlock()
		}
	}
	s, err := client.Sys().RenewWithContext(ctx, l.ID, 0)
	if err != nil {
		return provider.Lease{}, renewError(l.ID, "sys/leases/renew", err)
	}
	ttl := time.Duration(s.LeaseDuration) * time.Second
	if sess != nil {
		p.mu.Lock()
		ttl = min(ttl, sess.expires.Sub(p.now()))
		p.mu.Unlock()
	}
	return provider.Lease{ID: l.ID, TTL: ttl, IssuedAt: p.now(), Renewable: s.Renewable}, nil
}

// renewError maps Vault's "lease not found"/"invalid lease" (HTTP 400) and a dead session token to
// not found: the lease is gone, not the request malformed.
func renewError(lease, path string, err error) error {
	var re *api.ResponseError
	if errors.As(err, &re) && (re.StatusCode == 400 || re.StatusCode == 403) {
		for _, e := range re.Errors {
			if strings.Contains(e, "lease not found") || strings.Contains(e, "invalid lease") ||
				strings.Contains(e, "lease is not renewable") || strings.Contains(e, "permission denied") {
				return provider.NewError(provider.ErrNotFound, lease, fmt.Errorf("vault PUT %s: %s", path, e))
			}
		}
	}
	return classify(lease, "PUT", path, err)
}

// Revoke ends a lease synchronously through sys/leases/revoke (with the provider's token: Vault's
// default policy does not let a session token revoke leases), and, for the last lease of a per-session
// token, revokes that token too, which revokes anything else issued under it. Unknown leases are not an
// error.
func (p *Provider) Revoke(ctx context.Context, l provider.Lease) error {
	if p.closed.Load() {
		return provider.NewError(provider.ErrClosed, l.ID, nil)
	}
	if l.IsZero() {
		return nil
	}
	p.mu.Lock()
	sess := p.sessions[l.ID]
	delete(p.sessions, l.ID)
	shared := false
	for _, other := range p.sessions {
		shared = shared || other == sess
	}
	p.mu.Unlock()
	leaseErr := p.client.Sys().RevokeWithContext(ctx, l.ID)
	if sess != nil && !shared {
		if err := revokeSession(ctx, sess); err != nil {
			return classify(l.ID, "PUT", "auth/token/revoke-self", err)
		}
		if leaseErr != nil {
			// The session token's revocation revokes the lease too, asynchronously; the provider's
			// token lacks update on sys/leases/revoke (see docs/providers/vault.md).
			p.log.Warn("keyfort: sys/leases/revoke refused; the lease ends with its session token",
				slog.String("lease", l.ID), slog.String("error", classify(l.ID, "PUT", "sys/leases/revoke", leaseErr).Error()))
		}
		return nil
	}
	if leaseErr != nil {
		return classify(l.ID, "PUT", "sys/leases/revoke", leaseErr)
	}
	return nil
}

// revokeSession revokes a per-session token; a token that is already gone (403) is fine.
func revokeSession(ctx context.Context, sess *session) error {
	err := sess.client.Auth().Token().RevokeSelfWithContext(ctx, "")
	var re *api.ResponseError
	if err != nil && errors.As(err, &re) && re.StatusCode == 403 {
		return nil
	}
	return err
}
