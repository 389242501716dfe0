package redisstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyfort/keyfort/internal/redistest"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/providers/memory"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/oidc"
	"github.com/keyfort/keyfort/session/oidc/oidctest"
	"github.com/keyfort/keyfort/session/redisstore"
	"github.com/keyfort/keyfort/session/sessiontest"
	"github.com/keyfort/keyfort/session/token"
)

func TestStoreContract(t *testing.T) {
	sessiontest.RunStoreTests(t, func(t *testing.T) session.Store {
		rdb, prefix := redistest.Client(t)
		s, err := redisstore.New(context.Background(), redisstore.Config{Client: rdb, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestTwoReplicasAgree runs two Managers (two service instances) over one Redis and one key provider:
// a refresh rotated on one is spent on the other, reuse detected on one revokes on both, and a logout
// on one ends the session on the other.
func TestTwoReplicasAgree(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := redistest.Client(t)
	mem, err := memory.New(ctx, memory.Config{SigningKeys: map[string]memory.KeySetConfig{"session": {}}})
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := provider.NewClient(mem, provider.ClientConfig{Name: "memory"})
	defer keys.Close()
	iss := oidctest.New(t)
	google, err := oidc.New(ctx, oidc.Config{Issuer: iss.URL, Audience: "client-1"})
	if err != nil {
		t.Fatal(err)
	}
	hashKey := []byte("shared-hash-key-of-32-bytes-long")
	replica := func() *session.Manager {
		store, err := redisstore.New(ctx, redisstore.Config{Client: rdb, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		m, err := session.NewManager(session.Config{
			Issuer: "https://keyfort.test", Audience: "api", HashKey: hashKey, Store: store,
			Keys: token.KeySourceFunc(func(ctx context.Context) (provider.KeySet, error) { return keys.SigningKeys(ctx, "session") }),
			IdPs: map[string]*oidc.Verifier{"google": google}, RefreshGrace: -1,
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a, b := replica(), replica()
	start := func(sub string) session.Tokens {
		toks, err := a.StartSession(ctx, session.StartRequest{IdP: "google", ExternalToken: iss.Sign(t, "k1", iss.Claims(sub, "client-1"), nil)})
		if err != nil {
			t.Fatal(err)
		}
		return toks
	}

	t1 := start("alice")
	t2, err := b.RefreshSession(ctx, t1.RefreshToken)
	if err != nil {
		t.Fatalf("refresh on the other replica: %v", err)
	}
	if _, err := a.RefreshSession(ctx, t1.RefreshToken); !errors.Is(err, session.ErrRefreshReuse) {
		t.Fatalf("the spent token on the first replica: got %v, want ErrRefreshReuse", err)
	}
	if _, err := b.RefreshSession(ctx, t2.RefreshToken); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("theft detected on one replica must revoke on the other: got %v", err)
	}
	if _, err := b.VerifyAccess(ctx, t2.AccessToken); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("access on the other replica after theft: got %v", err)
	}

	u := start("bob")
	if err := b.Logout(ctx, u.AccessToken); err != nil {
		t.Fatal(err)
	}
	if _, err := a.VerifyAccess(ctx, u.AccessToken); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("logout on one replica, access on the other: got %v", err)
	}
}

func TestUnreachableRedisFailsLoudly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := redisstore.New(ctx, redisstore.Config{URL: "redis://127.0.0.1:1/0"})
	if !errors.Is(err, session.ErrStoreUnavailable) {
		t.Errorf("got %v, want ErrStoreUnavailable", err)
	}
}
