package session_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyfort/keyfort/internal/metrictest"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/token"
)

// revokedKeys opens the deny list of store for the test.
func revokedKeys(t *testing.T, store session.Store) *session.RevokedKeys {
	t.Helper()
	rk, err := session.NewRevokedKeys(context.Background(), session.RevokedKeysConfig{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rk.Close)
	return rk
}

// TestRevokeKey: revoking a signing key (the key leaked) makes every token it signed useless at
// once: a cache on the store's feed ends the cached sessions of its access tokens, new lookups and refreshes with its tokens are refused naming the kid, while the
// sessions signed by the rotated-in key carry on. A revoked active key signs nothing: StartSession
// fails, naming the kid, until the key is rotated.
func TestRevokeKey(t *testing.T) {
	shared := session.NewMemoryStore(nil)
	reg := prometheus.NewRegistry()
	rk, err := session.NewRevokedKeys(context.Background(), session.RevokedKeysConfig{Store: shared, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rk.Close)
	revokedMetric := func() float64 { return metrictest.Counter(t, reg, "keyfort_session_revoked_signing_keys", nil) }
	f := newFixtureWith(t, shared, func(c *session.Config) { c.RevokedKeys = rk })
	ctx := context.Background()
	cache := openCache(t, session.CacheConfig{Authenticator: f.m, Store: shared, Revalidate: time.Hour}, nil)

	old := f.startFor(t, "")
	oldKID, _ := token.KeyID(old.AccessToken)
	if n := revokedMetric(); n != 0 {
		t.Errorf("revoked keys reported before any revocation: %v", n)
	}
	cachedOld, err := cache.Get(ctx, old.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.keys.RotateSigningKey(ctx, "session"); err != nil {
		t.Fatal(err)
	}
	fresh := f.startFor(t, "")
	if kid, _ := token.KeyID(fresh.AccessToken); kid == oldKID {
		t.Fatal("the rotation did not change the signing key")
	}
	cachedFresh, err := cache.Get(ctx, fresh.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	unsure := f.startFor(t, "") // signed by the new key too, not cached yet

	if err := session.RevokeKey(ctx, shared, oldKID, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, cachedOld)
	cache.WaitForCutScans()
	if cachedFresh.Ended() {
		t.Fatal("a session of the new key ended with the old key's revocation")
	}
	_, err = cache.Get(ctx, old.AccessToken)
	if !errors.Is(err, session.ErrUnauthenticated) || !strings.Contains(err.Error(), oldKID) {
		t.Errorf("a lookup of the revoked key's access token: got %v, want ErrUnauthenticated naming %q", err, oldKID)
	}
	if _, err := f.m.RefreshSession(ctx, old.RefreshToken); !errors.Is(err, session.ErrUnauthenticated) || !strings.Contains(err.Error(), "signing key revoked") {
		t.Errorf("a refresh with the revoked key's refresh token: got %v, want ErrUnauthenticated (signing key revoked)", err)
	}
	if _, err := f.m.RefreshSession(ctx, fresh.RefreshToken); err != nil {
		t.Errorf("a refresh of the new key's session: %v", err)
	}
	if _, err := cache.Get(ctx, unsure.AccessToken); err != nil {
		t.Errorf("a lookup of the new key's access token: %v", err)
	}
	if got := rk.List(); len(got) != 1 || got[0].KeyID != oldKID || revokedMetric() != 1 {
		t.Errorf("the deny list: %+v (metric %v), want %q", got, revokedMetric(), oldKID)
	}

	// The active key revoked: nothing is signed until a rotation.
	newKID, _ := token.KeyID(fresh.AccessToken)
	if err := session.RevokeKey(ctx, shared, newKID, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	ext := f.iss.Sign(t, "k1", f.iss.Claims("alice", googleAud), nil)
	_, err = f.m.StartSession(ctx, session.StartRequest{IdP: "google", ExternalToken: ext})
	if !errors.Is(err, token.ErrRevokedKey) || !strings.Contains(err.Error(), newKID) {
		t.Errorf("StartSession with the active key revoked: got %v, want ErrRevokedKey naming %q", err, newKID)
	}
	waitDone(t, cachedFresh)
	if _, err := f.keys.RotateSigningKey(ctx, "session"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.StartSession(ctx, session.StartRequest{IdP: "google", ExternalToken: ext}); err != nil {
		t.Errorf("StartSession after a rotation past the revoked keys: %v", err)
	}
}

// TestRevokedKeyAtRevalidation: a replica that missed the revocation's event (a cache that does not
// follow the feed) ends the session at its next revalidation, and a deny list made after the
// revocation (a replica started later) has it from the store.
func TestRevokedKeyAtRevalidation(t *testing.T) {
	shared := session.NewMemoryStore(nil)
	f := newFixture(t, shared)
	ctx := context.Background()
	toks := f.startFor(t, "")
	kid, _ := token.KeyID(toks.AccessToken)
	if err := session.RevokeKey(ctx, shared, kid, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	rk := revokedKeys(t, shared) // made after the revocation
	if !rk.Revoked(kid) || rk.Revoked(kid+"x") {
		t.Fatalf("a deny list loaded after the revocation: Revoked(%q) = %v", kid, rk.Revoked(kid))
	}
	// A Manager of a replica that started later, with a cache off the feed that revalidates.
	late, err := session.NewManager(session.Config{Issuer: "https://keyfort.test", Audience: "api", Store: shared,
		Keys:        token.KeySourceFunc(func(ctx context.Context) (provider.KeySet, error) { return f.keys.SigningKeys(ctx, "session") }),
		RevokedKeys: rk})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := late.Authenticate(ctx, toks.AccessToken); !errors.Is(err, session.ErrUnauthenticated) || !strings.Contains(err.Error(), "signing key revoked") {
		t.Errorf("a later replica authenticated the revoked key's token: %v", err)
	}
	// A replica whose cache took the session before the revocation: its Revalidate ends it.
	p, err := f.m.Authenticate(ctx, toks.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := late.Revalidate(ctx, p); !errors.Is(err, session.ErrUnauthenticated) || !strings.Contains(err.Error(), kid) {
		t.Errorf("Revalidate of a session of the revoked key: got %v, want ErrUnauthenticated naming %q", err, kid)
	}
	if err := session.RevokeKey(ctx, hidden{shared}, kid, time.Now().Add(time.Hour)); !errors.Is(err, session.ErrNoKeyRevocation) {
		t.Errorf("RevokeKey over a store without KeyRevoker: %v", err)
	}
}

// TestRevokedKeyAtAVerifyingService: a guarded service that verifies the runtime's access tokens
// with its JWKS (the revoked key still published there) refuses them at once when it shares the
// store's deny list, and its cache on the feed ends the session it held.
func TestRevokedKeyAtAVerifyingService(t *testing.T) {
	shared := session.NewMemoryStore(nil)
	f := newFixture(t, shared)
	ctx := context.Background()
	srv := newJWKSServer(t, f)
	keys, err := token.NewJWKSKeys(ctx, token.JWKSConfig{URL: srv.URL, Now: f.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = keys.Close() })
	av, err := session.NewAccessVerifier(session.AccessVerifierConfig{Issuer: "https://keyfort.test", Audience: "api",
		Keys: keys, Store: shared, Now: f.clk.Now, RevokedKeys: revokedKeys(t, shared)})
	if err != nil {
		t.Fatal(err)
	}
	cache := openCache(t, session.CacheConfig{Authenticator: av, Store: shared, Revalidate: time.Hour}, nil)
	toks := f.start(t, "alice")
	bare, _, err := f.m.IssueToken(ctx, session.IssueRequest{Subject: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	held, err := cache.Get(ctx, toks.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := token.KeyID(toks.AccessToken)
	if err := session.RevokeKey(ctx, shared, kid, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, held)
	// The verifier itself, not only the cache that heard the event (which refuses new sessions
	// of the key for a while): a service that starts after the revocation has only the list.
	if _, err := av.Authenticate(ctx, bare); !errors.Is(err, session.ErrUnauthenticated) || !strings.Contains(err.Error(), "signing key revoked") {
		t.Errorf("the verifier authenticated a token of the revoked key: %v", err)
	}
	for name, tok := range map[string]string{"access": toks.AccessToken, "bare": bare} {
		if _, err := cache.Get(ctx, tok); !errors.Is(err, session.ErrUnauthenticated) || !strings.Contains(err.Error(), kid) {
			t.Errorf("the %s token of the revoked key at the service: got %v, want ErrUnauthenticated naming %q", name, err, kid)
		}
	}
}

// TestRevokedKeysOnTheCachesSubscription: a deny list made Unsubscribed hears nothing of the feed
// by itself; given to a Cache, it learns of a revocation from the cache's one subscription at once;
// and its periodic reload from the store catches what no event told it.
func TestRevokedKeysOnTheCachesSubscription(t *testing.T) {
	shared := session.NewMemoryStore(nil)
	ctx := context.Background()
	open := func(reload time.Duration) *session.RevokedKeys {
		rk, err := session.NewRevokedKeys(ctx, session.RevokedKeysConfig{Store: shared, Unsubscribed: true, ReloadInterval: reload})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rk.Close)
		return rk
	}
	deaf, viaCache, reloading := open(-1), open(-1), open(20*time.Millisecond)
	f := newFixtureWith(t, shared, func(c *session.Config) { c.RevokedKeys = viaCache })
	cache := openCache(t, session.CacheConfig{Authenticator: f.m, Store: shared, Revalidate: time.Hour, RevokedKeys: viaCache}, nil)
	toks := f.startFor(t, "")
	held, err := cache.Get(ctx, toks.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := token.KeyID(toks.AccessToken)
	if err := session.RevokeKey(ctx, shared, kid, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if !viaCache.Revoked(kid) {
		t.Error("the deny list given to the cache did not hear the revocation on the cache's feed")
	}
	waitDone(t, held)
	if deaf.Revoked(kid) {
		t.Error("an unsubscribed deny list with no reload heard the revocation: it is subscribed after all")
	}
	for i := 0; !reloading.Revoked(kid); i++ {
		if i == 250 {
			t.Fatal("the periodic reload never found the revocation")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
