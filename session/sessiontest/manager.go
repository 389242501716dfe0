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

// NewManager is a Manager for tests: an in-memory EdDSA signing key (through provider.Client, as in
// production) and a test identity provider named google whose tokens are for client id client-1;
// mut, when not nil, adjusts the Config first. It returns the identity provider too, to sign ID
// tokens with.
func NewManager(tb testing.TB, mut func(*session.Config)) (*session.Manager, *oidctest.Issuer) {
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
	cfg := session.Config{Issuer: "https://keyfort.test",
		Keys: token.KeySourceFunc(func(ctx context.Context) (provider.KeySet, error) { return keys.SigningKeys(ctx, "session") }),
		IdPs: map[string]*oidc.Verifier{"google": google}}
	if mut != nil {
		mut(&cfg)
	}
	m, err := session.NewManager(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return m, iss
}

// BoundManager is a NewManager for guard tests, binding access tokens to their client
// (Config.BindAccessTokens). startFor starts a session of alice for the client named client ("":
// none) and returns its access token.
func BoundManager(tb testing.TB) (m *session.Manager, startFor func(client string) string) {
	tb.Helper()
	m, iss := NewManager(tb, func(c *session.Config) { c.BindAccessTokens = true })
	return m, func(client string) string {
		tb.Helper()
		toks, err := m.StartSession(context.Background(), session.StartRequest{IdP: "google", Client: client,
			ExternalToken: iss.Sign(tb, "k1", iss.Claims("alice", "client-1"), nil)})
		if err != nil {
			tb.Fatal(err)
		}
		return toks.AccessToken
	}
}
