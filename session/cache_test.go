package session_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"errors"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/providers/memory"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/oidc"
	"github.com/keyfort/keyfort/session/oidc/oidctest"
)

// oidcAuth authenticates external OIDC tokens and counts full verifications.
type oidcAuth struct {
	v     *oidc.Verifier
	calls atomic.Int64
}

func (a *oidcAuth) Authenticate(ctx context.Context, raw string) (session.Principal, error) {
	a.calls.Add(1)
	t, err := a.v.Verify(ctx, raw)
	if err != nil {
		return session.Principal{}, errors.Join(session.ErrUnauthenticated, err)
	}
	return session.Principal{Subject: t.Subject, ExpiresAt: t.ExpiresAt, Identity: provider.SensitiveString(raw)}, nil
}

// memCreds issues credentials from the memory provider through provider.Client.
type memCreds struct{ c *provider.Client }

func (m memCreds) Credentials(ctx context.Context, role string, id provider.Sensitive) (provider.Credentials, session.Leaser, error) {
	cr, err := m.c.Credentials(ctx, provider.CredentialRequest{Role: role, Identity: id})
	return cr, m.c, err
}

type cacheFixture struct {
	cache *session.Cache
	auth  *oidcAuth
	iss   *oidctest.Issuer
	clk   *clock
	creds *provider.Client
	store *session.MemoryStore
}

func newCacheFixture(t *testing.T, mut func(*session.CacheConfig)) *cacheFixture {
	t.Helper()
	ctx := context.Background()
	iss := oidctest.New(t)
	iss.AddKey(t, "ec", jose.ES256)
	v, err := oidc.New(ctx, oidc.Config{Issuer: iss.URL, Audience: "client-1"})
	if err != nil {
		t.Fatal(err)
	}
	mem, _ := memory.New(ctx, memory.Config{Credentials: map[string]memory.CredentialsConfig{"db": {TTL: "1h"}, "short": {TTL: "600ms"}}})
	cl, _ := provider.NewClient(mem, provider.ClientConfig{Name: "memory"})
	t.Cleanup(func() { _ = cl.Close() })
	clk := &clock{t: time.Now()}
	f := &cacheFixture{auth: &oidcAuth{v: v}, iss: iss, clk: clk, creds: cl, store: session.NewMemoryStore(clk.Now)}
	cfg := session.CacheConfig{Authenticator: f.auth, Credentials: memCreds{cl}, Store: f.store, Now: clk.Now,
		IdleTimeout: time.Minute, TTL: time.Hour}
	if mut != nil {
		mut(&cfg)
	}
	c, err := session.NewCache(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	f.cache = c
	return f
}

func (f *cacheFixture) token(t *testing.T, kid, sub string) string {
	return f.iss.Sign(t, kid, f.iss.Claims(sub, "client-1"), nil)
}

func TestCacheSingleFlightCreation(t *testing.T) {
	f := newCacheFixture(t, nil)
	tok := f.token(t, "k1", "alice")
	var wg sync.WaitGroup
	got := make(chan *session.Session, 32)
	for range 32 {
		wg.Go(func() {
			s, err := f.cache.Get(context.Background(), tok)
			if err != nil {
				t.Error(err)
				return
			}
			got <- s
		})
	}
	wg.Wait()
	close(got)
	var first *session.Session
	for s := range got {
		if first == nil {
			first = s
		} else if s != first {
			t.Fatal("concurrent gets of one token made two sessions")
		}
	}
	if n := f.auth.calls.Load(); n != 1 {
		t.Errorf("full verifications: got %d, want 1", n)
	}
}

func TestCacheKeysOnTheSignedPart(t *testing.T) {
	f := newCacheFixture(t, nil)
	ctx := context.Background()
	tok := f.token(t, "ec", "alice")
	s, err := f.cache.Get(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	p := strings.Split(tok, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(p[2])
	mall := make([]byte, 64)
	copy(mall, sig[:32])
	new(big.Int).Sub(elliptic.P256().Params().N, new(big.Int).SetBytes(sig[32:])).FillBytes(mall[32:])
	twin := p[0] + "." + p[1] + "." + base64.RawURLEncoding.EncodeToString(mall)
	s2, err := f.cache.Get(ctx, twin)
	if err != nil || s2 != s {
		t.Fatalf("the malleated twin: got %v, %v; want the same session", s2, err)
	}
	forged := p[0] + "." + p[1] + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 64))
	if _, err := f.cache.Get(ctx, forged); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("a bad signature over a cached signed part: got %v, want ErrUnauthenticated (no cache hit without a verified signature)", err)
	}
	_ = ecdsa.Verify
}

func TestLogoutTombstoneBlocksReplayAndTwins(t *testing.T) {
	f := newCacheFixture(t, nil)
	ctx := context.Background()
	tok := f.token(t, "k1", "alice")
	s, err := f.cache.Get(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := s.Credentials(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.cache.End(ctx, tok, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, s)
	if _, err := f.cache.Get(ctx, tok); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("replay after logout: got %v, want ErrUnauthenticated", err)
	}
	waitRevoked(t, f.creds, cr.Lease)
}

func waitDone(t *testing.T, s *session.Session) {
	t.Helper()
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not end")
	}
}

// waitRevoked polls the provider until the lease is gone (revocation runs off the request path).
func waitRevoked(t *testing.T, c *provider.Client, l provider.Lease) {
	t.Helper()
	for range 500 {
		if _, err := c.Renew(context.Background(), l); errors.Is(err, provider.ErrNotFound) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("lease %s was not revoked", l.ID)
}

func TestIdleTimeoutEndsSessionAndRevokesLeases(t *testing.T) {
	f := newCacheFixture(t, nil)
	ctx := context.Background()
	s, err := f.cache.Get(ctx, f.token(t, "k1", "alice"))
	if err != nil {
		t.Fatal(err)
	}
	cr, err := s.Credentials(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	again, _ := s.Credentials(ctx, "db")
	if again.Lease.ID != cr.Lease.ID {
		t.Error("credentials are not cached in the session")
	}
	f.clk.Advance(2 * time.Minute)
	f.cache.CleanUp()
	waitDone(t, s)
	waitRevoked(t, f.creds, cr.Lease)
	if _, err := s.Credentials(ctx, "db"); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("credentials of an ended session: got %v", err)
	}
}

func TestShutdownEndsSessions(t *testing.T) {
	f := newCacheFixture(t, nil)
	ctx := context.Background()
	s, _ := f.cache.Get(ctx, f.token(t, "k1", "alice"))
	cr, err := s.Credentials(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.cache.Close(); err != nil {
		t.Fatal(err)
	}
	waitDone(t, s)
	if _, err := f.creds.Renew(ctx, cr.Lease); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("lease after shutdown: got %v, want revoked", err)
	}
}

func TestLeaseRenewedBeforeExpiry(t *testing.T) {
	f := newCacheFixture(t, nil)
	ctx := context.Background()
	s, _ := f.cache.Get(ctx, f.token(t, "k1", "alice"))
	first, err := s.Credentials(ctx, "short")
	if err != nil {
		t.Fatal(err)
	}
	// The memory provider's clock is real: wait for the session's renewal timer (at 2/3 of 600ms).
	for range 300 {
		cur, _ := s.Credentials(ctx, "short")
		if cur.Lease.IssuedAt.After(first.Lease.IssuedAt) {
			if cur.Lease.ID != first.Lease.ID {
				t.Errorf("renewal replaced the lease instead of renewing it")
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the lease was never renewed")
}

func TestInjectCredentials(t *testing.T) {
	cfg := map[string]any{"host": "db.internal"}
	session.InjectCredentials(cfg, "db_", provider.Credentials{Username: "u", Password: provider.SensitiveString("p"),
		Extra: map[string]provider.Sensitive{"port": provider.SensitiveString("5432")}})
	if cfg["db_username"] != "u" || cfg["db_password"] != "p" || cfg["db_port"] != "5432" || cfg["host"] != "db.internal" {
		t.Errorf("got %v", cfg)
	}
}

// TestRevocationReachesCachedSessions: a session cached by one replica ends once another replica
// revokes its family, within the revalidation interval.
func TestRevocationReachesCachedSessions(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	toks := f.start(t, "alice")
	cache, err := session.NewCache(session.CacheConfig{Authenticator: f.m, Now: f.clk.Now, Revalidate: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	s, err := cache.Get(ctx, toks.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.m.Logout(ctx, toks.RefreshToken); err != nil { // "another replica": the shared store only
		t.Fatal(err)
	}
	if _, err := cache.Get(ctx, toks.AccessToken); err != nil {
		t.Fatalf("within the revalidation interval the cached session still serves: %v", err)
	}
	f.clk.Advance(11 * time.Second)
	if _, err := cache.Get(ctx, toks.AccessToken); !errors.Is(err, session.ErrUnauthenticated) {
		t.Fatalf("after the interval: got %v, want ErrUnauthenticated", err)
	}
	waitDone(t, s)
}

// TestAbsoluteExpiry: a session in constant use still ends at its absolute TTL.
func TestAbsoluteExpiry(t *testing.T) {
	f := newCacheFixture(t, func(c *session.CacheConfig) { c.TTL = 10 * time.Minute; c.IdleTimeout = time.Hour })
	ctx := context.Background()
	tok := f.token(t, "k1", "alice")
	s, err := f.cache.Get(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	for range 9 {
		f.clk.Advance(time.Minute)
		if _, err := f.cache.Get(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	f.clk.Advance(2 * time.Minute)
	f.cache.CleanUp()
	waitDone(t, s)
	if s2, err := f.cache.Get(ctx, tok); err != nil || s2 == s {
		t.Errorf("after the absolute TTL the token starts a new session: got %v, %v", s2, err)
	}
}
