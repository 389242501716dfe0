package vault

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/keyfort/keyfort/internal/vaulttest"
	"github.com/keyfort/keyfort/provider"
)

// TestLoginRedoneBeforeMaxTTL gives the provider an AppRole login whose token lives at most a few
// seconds: the lifetime watcher renews it, and before the max TTL the provider logs in again, so calls
// keep working with a new token. The wait is for Vault's real token clock, not a timing assertion.
func TestLoginRedoneBeforeMaxTTL(t *testing.T) {
	srv := vaulttest.Start(t)
	srv.Write(t, "sys/auth/approle", map[string]any{"type": "approle"})
	srv.Write(t, "sys/policies/acl/read-app", map[string]any{"policy": `path "secret/data/app" { capabilities = ["read"] }`})
	srv.Write(t, "auth/approle/role/short", map[string]any{"token_policies": "read-app", "token_ttl": "2s", "token_max_ttl": "4s"})
	rid, err := srv.Client(t).Logical().Read("auth/approle/role/short/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid := srv.Write(t, "auth/approle/role/short/secret-id", nil)
	srv.Write(t, "secret/data/app", map[string]any{"data": map[string]any{"value": "ok"}})
	raw, _ := json.Marshal(map[string]any{"address": srv.Addr, "auth": map[string]any{
		"method": "approle", "role_id": rid.Data["role_id"], "secret_id": sid.Data["secret_id"],
	}})
	ip, err := Factory(context.Background(), provider.NewSettings("vault", raw))
	if err != nil {
		t.Fatal(err)
	}
	p := ip.(*Provider)
	defer p.Close()
	first := p.client.Token()
	// Poll Vault's real token clock (it cannot be injected): first for a new login, then for the
	// first token's death.
	waitUntil(t, "a new login before the first token's max TTL", func() bool { return p.client.Token() != first })
	root := srv.Client(t)
	waitUntil(t, "the first token to expire", func() bool {
		_, err := root.Auth().Token().Lookup(first)
		return err != nil
	})
	if _, err := p.Secret(context.Background(), "secret/app"); err != nil {
		t.Errorf("after the first token expired: %v", err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
