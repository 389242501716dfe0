package session_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/oidc"
	"github.com/keyfort/keyfort/session/token"
)

const googleAud = "client-123.apps.googleusercontent.com"

// externalCache is a Cache of ID tokens of f's issuer (a guarded service) over store, with mut
// applied to its configuration; it is closed when the test ends.
func externalCache(t *testing.T, f *fixture, store session.Store, mut func(*session.CacheConfig)) *session.Cache {
	t.Helper()
	v, err := oidc.New(context.Background(), oidc.Config{Issuer: f.iss.URL, Audience: googleAud})
	if err != nil {
		t.Fatal(err)
	}
	return openCache(t, session.CacheConfig{Authenticator: &oidcAuth{v: v}, Store: store}, mut)
}

// openCache is a Cache of cfg, with mut applied, closed when the test ends.
func openCache(t *testing.T, cfg session.CacheConfig, mut func(*session.CacheConfig)) *session.Cache {
	t.Helper()
	if mut != nil {
		mut(&cfg)
	}
	c, err := session.NewCache(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestLogoutTombstonesTheExternalToken: after a logout, the external token that started the session
// cannot start another one (a replay of a captured ID token), while a new login can.
func TestLogoutTombstonesTheExternalToken(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	ext := f.iss.Sign(t, "k1", f.iss.Claims("alice", googleAud), nil)
	toks, err := f.m.StartSession(ctx, session.StartRequest{IdP: "google", ExternalToken: ext})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.StartSession(ctx, session.StartRequest{IdP: "google", ExternalToken: ext}); err != nil {
		t.Fatalf("before the logout one external token may start a second session: %v", err)
	}
	if err := f.m.Logout(ctx, toks.RefreshToken); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.StartSession(ctx, session.StartRequest{IdP: "google", ExternalToken: ext}); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("the logged-out external token started a session: got %v, want ErrUnauthenticated", err)
	}
	claims := f.iss.Claims("alice", googleAud)
	claims["nonce"] = "second-login"
	fresh := f.iss.Sign(t, "k1", claims, nil)
	if _, err := f.m.StartSession(ctx, session.StartRequest{IdP: "google", ExternalToken: fresh}); err != nil {
		t.Errorf("a new login after the logout: %v", err)
	}
}

// TestReplicasShareTombstonesWithoutConfiguredKey: Managers and Caches configured with no HashKey
// over one store (two replicas, or the runtime and a guarded service) hash one token alike, so a
// logout on one reaches the others: a cache of another replica ends its session of the token at its
// next revalidation and refuses to start it again, and a Manager's Logout ends the sessions a guarded
// service keeps for the external token that started it.
func TestReplicasShareTombstonesWithoutConfiguredKey(t *testing.T) {
	shared := session.NewMemoryStore(nil)
	f := newFixture(t, shared)
	ctx := context.Background()
	newCache := func() *session.Cache {
		// Off the store's revocation feed: this is the revalidation that backs it up
		// (TestRevocationFeedEndsSessionsAtOnce has the feed).
		return externalCache(t, f, shared, func(c *session.CacheConfig) {
			c.Now, c.Revalidate, c.IgnoreRevocationFeed = f.clk.Now, 10*time.Second, true
		})
	}
	a, b := newCache(), newCache()

	ext := f.iss.Sign(t, "k1", f.iss.Claims("bob", googleAud), nil)
	sa, err := a.Get(ctx, ext)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := b.Get(ctx, ext)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.End(ctx, ext, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, sa)
	if _, err := b.Get(ctx, ext); err != nil {
		t.Fatalf("within the revalidation interval the other replica still serves: %v", err)
	}
	f.clk.Advance(11 * time.Second)
	if _, err := b.Get(ctx, ext); !errors.Is(err, session.ErrUnauthenticated) {
		t.Fatalf("after the interval the other replica: got %v, want ErrUnauthenticated", err)
	}
	waitDone(t, sb)
	if _, err := newCache().Get(ctx, ext); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("a third replica started a session of the ended token: %v", err)
	}
	if _, err := f.m.StartSession(ctx, session.StartRequest{IdP: "google", ExternalToken: ext}); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("the Manager started a session of a token a Cache ended: %v", err)
	}

	// The other way: a guarded service keeps a session of the external token; the runtime's logout
	// of the Keyfort session it started ends it.
	ext2 := f.iss.Sign(t, "k1", f.iss.Claims("carol", googleAud), nil)
	toks, err := f.m.StartSession(ctx, session.StartRequest{IdP: "google", ExternalToken: ext2})
	if err != nil {
		t.Fatal(err)
	}
	guarded, err := a.Get(ctx, ext2)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.m.Logout(ctx, toks.AccessToken); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(11 * time.Second)
	if _, err := a.Get(ctx, ext2); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("the guarded session of a logged-out login: got %v, want ErrUnauthenticated", err)
	}
	waitDone(t, guarded)
}

// TestConfiguredHashKeyWins: an explicit HashKey is used over the store's, so two caches that
// configure different keys do not see each other's tombstones (and a short key is refused).
func TestConfiguredHashKeyWins(t *testing.T) {
	shared := session.NewMemoryStore(nil)
	f := newFixture(t, shared)
	ctx := context.Background()
	newCache := func(key string) *session.Cache {
		return externalCache(t, f, shared, func(c *session.CacheConfig) { c.HashKey = []byte(key) })
	}
	a, b := newCache("key-a-key-a-key-a-key-a-key-a-32"), newCache("key-b-key-b-key-b-key-b-key-b-32")
	ext := f.iss.Sign(t, "k1", f.iss.Claims("dave", googleAud), nil)
	if err := a.End(ctx, ext, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Get(ctx, ext); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("the cache that ended the token: got %v", err)
	}
	if _, err := b.Get(ctx, ext); err != nil {
		t.Errorf("a cache with another configured key must not find the tombstone: %v", err)
	}
	if _, err := session.NewManager(session.Config{Issuer: "x", HashKey: []byte("short"),
		Keys: token.KeySourceFunc(func(context.Context) (provider.KeySet, error) { return provider.KeySet{}, nil })}); err == nil {
		t.Error("a HashKey under 32 bytes was accepted")
	}
}

// flaky is a store whose tombstone (and cut) reads fail while down is set, like an unreachable Redis.
type flaky struct {
	*session.MemoryStore
	down atomic.Bool
}

func (s *flaky) Tombstoned(ctx context.Context, key string) (bool, error) {
	if s.down.Load() {
		return false, errDown
	}
	return s.MemoryStore.Tombstoned(ctx, key)
}

func (s *flaky) TokenEnded(ctx context.Context, t session.TokenRef) (bool, error) {
	if s.down.Load() {
		return false, errDown
	}
	return s.MemoryStore.TokenEnded(ctx, t)
}

// TestRevalidationFailsClosedAndRecovers: with the shared store unreachable, a cached session of an
// external token is refused (ErrStoreUnavailable) once its revalidation is due, and served again,
// the same session, when the store answers.
func TestRevalidationFailsClosedAndRecovers(t *testing.T) {
	store := &flaky{MemoryStore: session.NewMemoryStore(nil)}
	f := newFixture(t, store.MemoryStore)
	ctx := context.Background()
	c := externalCache(t, f, store, func(c *session.CacheConfig) { c.Now, c.Revalidate = f.clk.Now, 10*time.Second })
	ext := f.iss.Sign(t, "k1", f.iss.Claims("erin", googleAud), nil)
	s, err := c.Get(ctx, ext)
	if err != nil {
		t.Fatal(err)
	}
	store.down.Store(true)
	if _, err := c.Get(ctx, ext); err != nil {
		t.Fatalf("before the revalidation is due, the store is not asked: %v", err)
	}
	f.clk.Advance(11 * time.Second)
	if _, err := c.Get(ctx, ext); !errors.Is(err, session.ErrStoreUnavailable) {
		t.Fatalf("revalidation with the store down: got %v, want ErrStoreUnavailable", err)
	}
	store.down.Store(false)
	again, err := c.Get(ctx, ext)
	if err != nil || again != s {
		t.Fatalf("after the store recovers: got %v, %v; want the same session", again, err)
	}
}
