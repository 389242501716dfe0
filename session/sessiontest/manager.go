package sessiontest

import (
	"context"
	"testing"

	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/providers/memory"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/oidc"
	"github.com/keyfort/keyfort/session/oidc/oidctest"
	"github.com/keyfort/keyfort/session/token"
)

// BoundManager is a Manager for guard tests: an in-memory EdDSA signing key, a test identity
// provider named google (client id client-1) and access tokens bound to their client
// (Config.BindAccessTokens). startFor starts a session of alice for the client named client ("":
// none) and returns its access token.
func BoundManager(tb testing.TB) (m *session.Manager, startFor func(client string) string) {
	tb.Helper()
	ctx := context.Background()
	mem, err := memory.New(ctx, memory.Config{SigningKeys: map[string]memory.KeySetConfig{"session": {Algorithm: "EdDSA"}}})
	if err != nil {
		tb.Fatal(err)
	}
	keys, err := provider.NewClient(mem, provider.ClientConfig{Name: "memory"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = keys.Close() })
	iss := oidctest.New(tb)
	google, err := oidc.New(ctx, oidc.Config{Issuer: iss.URL, Audience: "client-1"})
	if err != nil {
		tb.Fatal(err)
	}
	m, err = session.NewManager(session.Config{Issuer: "https://keyfort.test", BindAccessTokens: true,
		Keys: token.KeySourceFunc(func(ctx context.Context) (provider.KeySet, error) { return keys.SigningKeys(ctx, "session") }),
		IdPs: map[string]*oidc.Verifier{"google": google}})
	if err != nil {
		tb.Fatal(err)
	}
	return m, func(client string) string {
		tb.Helper()
		toks, err := m.StartSession(ctx, session.StartRequest{IdP: "google", Client: client,
			ExternalToken: iss.Sign(tb, "k1", iss.Claims("alice", "client-1"), nil)})
		if err != nil {
			tb.Fatal(err)
		}
		return toks.AccessToken
	}
}
