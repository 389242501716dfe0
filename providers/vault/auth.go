package vault

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/keyfort/keyfort/provider"
)

// login obtains the provider's own token and installs it on p.client. It returns the auth secret for
// maintain (nil when the token neither expires nor renews, like a root token).
func (p *Provider) login(ctx context.Context) (*api.Secret, error) {
	a := p.s.Auth
	loc := a.Path + "/login"
	var body map[string]any
	switch a.Method {
	case "token":
		tok := a.Token
		if a.TokenFile != "" {
			t, err := readFileTrim(a.TokenFile)
			if err != nil {
				return nil, provider.NewError(provider.ErrInvalidConfig, "auth.token_file", err)
			}
			tok = t
		}
		if tok == "" {
			tok = os.Getenv("VAULT_TOKEN")
		}
		p.client.SetToken(tok)
		self, err := p.client.Auth().Token().LookupSelfWithContext(ctx)
		if err != nil {
			return nil, classify("auth.token", "GET", "auth/token/lookup-self", err)
		}
		ttl, _ := self.TokenTTL()
		renewable, _ := self.TokenIsRenewable()
		if ttl == 0 {
			return nil, nil
		}
		return &api.Secret{Auth: &api.SecretAuth{ClientToken: tok, Renewable: renewable, LeaseDuration: int(ttl.Seconds())}}, nil
	case "approle":
		secretID := a.SecretID
		if a.SecretIDFile != "" {
			s, err := readFileTrim(a.SecretIDFile)
			if err != nil {
				return nil, provider.NewError(provider.ErrInvalidConfig, "auth.secret_id_file", err)
			}
			secretID = s
		}
		body = map[string]any{"role_id": a.RoleID, "secret_id": secretID}
	case "kubernetes", "jwt":
		jwt, err := readFileTrim(a.JWTFile)
		if err != nil {
			return nil, provider.NewError(provider.ErrInvalidConfig, "auth.jwt_file", err)
		}
		body = map[string]any{"role": a.Role, "jwt": jwt}
	}
	anon, err := p.client.Clone()
	if err != nil {
		return nil, provider.NewError(provider.ErrInternal, loc, err)
	}
	anon.ClearToken()
	secret, err := anon.Logical().WriteWithContext(ctx, loc, body)
	if err != nil {
		return nil, classify(loc, "PUT", loc, err)
	}
	if secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "" {
		return nil, provider.NewError(provider.ErrPermissionDenied, loc, errors.New("login returned no token"))
	}
	if err := checkServiceToken(secret); err != nil {
		return nil, provider.NewError(provider.ErrInvalidConfig, loc, err)
	}
	p.client.SetToken(secret.Auth.ClientToken)
	p.loggedIn = true
	return secret, nil
}

// checkServiceToken refuses batch tokens: Keyfort revokes what it creates, and batch tokens cannot be
// revoked.
func checkServiceToken(secret *api.Secret) error {
	if secret.Auth != nil && (strings.HasPrefix(secret.Auth.ClientToken, "hvb.") || strings.HasPrefix(secret.Auth.ClientToken, "b.")) {
		return errors.New("the auth role issues batch tokens; Keyfort needs revocable service tokens (token_type=service)")
	}
	return nil
}

// maintain keeps the provider's token alive: a LifetimeWatcher renews it, and when it can renew no
// more (max TTL near, or a renewal refused) the provider logs in again, before the token expires.
func (p *Provider) maintain(auth *api.Secret) {
	defer p.wg.Done()
	backoff := time.Second
	for {
		if auth == nil || auth.Auth == nil || auth.Auth.LeaseDuration == 0 {
			return // a token without TTL (root, or periodic without period) needs no care
		}
		w, err := p.client.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: auth})
		if err == nil {
			go w.Start()
			select {
			case <-p.bg.Done():
				w.Stop()
				return
			case err = <-w.DoneCh():
			}
			w.Stop()
		}
		if err != nil {
			p.log.Warn("keyfort: vault token renewal ended; logging in again", slog.String("reason", err.Error()))
		}
		for {
			ctx, cancel := context.WithTimeout(p.bg, p.s.requestTimeout)
			auth, err = p.login(ctx)
			cancel()
			if err == nil {
				backoff = time.Second
				break
			}
			p.log.Error("keyfort: vault login failed; retrying", slog.String("error", err.Error()), slog.Duration("backoff", backoff))
			select {
			case <-p.bg.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, time.Minute)
		}
	}
}

func jsonNumber(v any) int64 {
	switch n := v.(type) {
	case json.Number:
		i, _ := n.Int64()
		return i
	case float64:
		return int64(n)
	case int:
		return int64(n)
	case int64:
		return n
	}
	return 0
}
