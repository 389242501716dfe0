package session_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/oidc"
	"github.com/keyfort/keyfort/session/oidc/oidctest"
	"github.com/keyfort/keyfort/session/token"
)

// jwksServer publishes the fixture's signing keys as the runtime does (public keys only), counting
// requests; down makes it answer 503.
type jwksServer struct {
	*httptest.Server
	hits atomic.Int64
	down atomic.Bool
}

func newJWKSServer(t *testing.T, f *fixture) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if s.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		ks, err := f.keys.SigningKeys(r.Context(), "session")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		body, _ := ks.PublicJWKS()
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func newAccessVerifier(t *testing.T, f *fixture, url string, store session.Store) (*session.AccessVerifier, *token.JWKSKeys) {
	t.Helper()
	keys, err := token.NewJWKSKeys(context.Background(), token.JWKSConfig{URL: url, Now: f.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = keys.Close() })
	av, err := session.NewAccessVerifier(session.AccessVerifierConfig{Issuer: "https://keyfort.test", Audience: "api",
		Keys: keys, Store: store, Now: f.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return av, keys
}

// withKid replaces the kid of a token's header (the signature no longer matches; the kid is looked
// up first).
func withKid(t *testing.T, tok, kid string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	h := fmt.Sprintf(`{"alg":"EdDSA","kid":%q,"typ":"at+jwt"}`, kid)
	return base64.RawURLEncoding.EncodeToString([]byte(h)) + "." + parts[1] + "." + parts[2]
}

// TestAccessVerifierWithPublicKeysOnly: a service that verifies Keyfort access tokens with the
// runtime's JWKS (no private key) and its shared store accepts the runtime's access tokens and
// nothing else, follows a key rotation, bounds the fetches a flood of unknown kids causes, and sees
// a logout.
func TestAccessVerifierWithPublicKeysOnly(t *testing.T) {
	shared := session.NewMemoryStore(nil)
	f := newFixture(t, shared)
	ctx := context.Background()
	srv := newJWKSServer(t, f)
	av, keys := newAccessVerifier(t, f, srv.URL, shared)
	set, _ := keys.SigningKeys(ctx)
	for _, k := range set.Keys {
		if !k.Private.IsZero() {
			t.Fatalf("the JWKS key source holds private material for kid %s", k.ID)
		}
	}

	toks := f.start(t, "alice")
	p, err := av.Authenticate(ctx, toks.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if p.Subject != "alice" || p.Tenant != "acme" || p.Family == "" || p.Identity.RevealString() != toks.AccessToken {
		t.Errorf("principal: %+v", p)
	}
	if _, err := av.Authenticate(ctx, toks.RefreshToken); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("a refresh token as an access token: got %v", err)
	}
	bare, _, err := f.m.IssueToken(ctx, session.IssueRequest{Subject: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := av.Authenticate(ctx, bare); err != nil {
		t.Errorf("a bare access token (no session): %v", err)
	}

	// Rotation: the new key signs tokens the verifier has not seen; it fetches the set once.
	if _, err := f.keys.RotateSigningKey(ctx, "session"); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(time.Minute) // past the fetch rate limit, within the set's max age
	before := srv.hits.Load()
	rotated, err := f.m.RefreshSession(ctx, toks.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := av.Authenticate(ctx, rotated.AccessToken); err != nil {
		t.Fatalf("a token of the rotated key: %v", err)
	}
	if got := srv.hits.Load() - before; got != 1 {
		t.Errorf("rotation cost %d fetches, want 1", got)
	}

	// A flood of made-up kids within the rate limit costs no fetch.
	before = srv.hits.Load()
	for i := range 50 {
		if _, err := av.Authenticate(ctx, withKid(t, rotated.AccessToken, fmt.Sprintf("made-up-%d", i))); !errors.Is(err, session.ErrUnauthenticated) {
			t.Fatalf("unknown kid: got %v", err)
		}
	}
	if got := srv.hits.Load() - before; got != 0 {
		t.Errorf("a flood of unknown kids right after a fetch caused %d fetches", got)
	}
	f.clk.Advance(time.Minute)
	for i := range 50 {
		_, _ = av.Authenticate(ctx, withKid(t, rotated.AccessToken, fmt.Sprintf("later-%d", i)))
	}
	if got := srv.hits.Load() - before; got != 1 {
		t.Errorf("a flood of unknown kids after the interval caused %d fetches, want 1", got)
	}

	// The JWKS down past the set's max age: one fetch is tried, and the last good set keeps
	// verifying.
	srv.down.Store(true)
	f.clk.Advance(time.Hour)
	later, _, err := f.m.IssueToken(ctx, session.IssueRequest{Subject: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	before = srv.hits.Load()
	if _, err := av.Authenticate(ctx, later); err != nil {
		t.Errorf("with the JWKS down, the last good set: %v", err)
	}
	for i := 0; srv.hits.Load() == before; i++ { // the background fetch of the old set
		if i == 500 {
			t.Fatal("an old set was not fetched again")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := av.Authenticate(ctx, later); err != nil {
		t.Errorf("after the failed fetch, the last good set: %v", err)
	}
	if got := srv.hits.Load() - before; got != 1 {
		t.Errorf("an old set with the JWKS down: %d fetches tried, want 1 (rate-limited)", got)
	}
	srv.down.Store(false)

	// Logout at the runtime: the verifier refuses the session's tokens, and a Cache ends its
	// session at the next revalidation.
	fresh := f.start(t, "bob")
	cache, err := session.NewCache(session.CacheConfig{Authenticator: av, Store: shared, Now: f.clk.Now, Revalidate: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	s, err := cache.Get(ctx, fresh.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.m.Logout(ctx, fresh.RefreshToken); err != nil {
		t.Fatal(err)
	}
	if _, err := av.Authenticate(ctx, fresh.AccessToken); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("after the logout: got %v", err)
	}
	f.clk.Advance(11 * time.Second)
	if _, err := cache.Get(ctx, fresh.AccessToken); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("the cached session after the logout: got %v", err)
	}
	waitDone(t, s)
}

// TestJWKSKeysRefusals: an unreachable JWKS, one that is not https, or one without a usable key
// (HS256 secrets are never published) is an error at construction; an oversized one too.
func TestJWKSKeysRefusals(t *testing.T) {
	ctx := context.Background()
	empty := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA","kid":"h","alg":"HS256"}]}`))
	}))
	defer empty.Close()
	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"keys":[` + strings.Repeat(" ", 2<<20) + `]}`))
	}))
	defer huge.Close()
	for name, url := range map[string]string{
		"unreachable": "http://127.0.0.1:1/jwks",
		"not https":   "http://keyfort.example/jwks",
		"no key":      empty.URL,
		"oversized":   huge.URL,
	} {
		if _, err := token.NewJWKSKeys(ctx, token.JWKSConfig{URL: url}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestJWKSKeysClose: Close cancels a background fetch hung on an unresponsive JWKS server rather than
// waiting out its timeout, starts no other, and leaves the last set serving.
func TestJWKSKeysClose(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	jwks := newJWKSServer(t, f)
	hung := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	blocking := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if jwks.hits.Load() > 0 { // the first request is served; later ones hang
			close(hung)
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		jwks.Config.Handler.ServeHTTP(w, r)
	}))
	defer blocking.Close()
	keys, err := token.NewJWKSKeys(ctx, token.JWKSConfig{URL: blocking.URL, Now: f.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(10 * time.Minute) // past MaxAge: the next call fetches in the background
	if _, err := keys.SigningKeys(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-hung:
	case <-time.After(10 * time.Second):
		t.Fatal("no background fetch")
	}
	closed := make(chan struct{})
	go func() { _ = keys.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second): // the fetch's own timeout is 10s
		t.Fatal("Close waits for the hung fetch instead of cancelling it")
	}
	f.clk.Advance(10 * time.Minute)
	set, err := keys.SigningKeys(ctx)
	if err != nil || len(set.Keys) == 0 {
		t.Errorf("after Close, the last set: %v, %v", set, err)
	}
	if err := keys.Refresh(ctx); !errors.Is(err, token.ErrJWKSClosed) {
		t.Errorf("Refresh after Close: got %v, want ErrJWKSClosed", err)
	}
	if n := keys.Fetches(); n != 2 {
		t.Errorf("%d fetches, want 2 (none after Close)", n)
	}
}

// TestIDTokens: the ID-token Authenticator names the identity provider and carries sub, exp and
// iat; a bad token is ErrUnauthenticated, an identity provider that cannot be reached is not (not
// the caller's fault), and neither error quotes the token.
func TestIDTokens(t *testing.T) {
	ctx := context.Background()
	iss := oidctest.New(t)
	v, err := oidc.New(ctx, oidc.Config{Issuer: iss.URL, Audience: "client-1"})
	if err != nil {
		t.Fatal(err)
	}
	auth := session.IDTokens{IdP: "google", Verifier: v}
	claims := iss.Claims("alice", "client-1")
	raw := iss.Sign(t, "k1", claims, nil)
	p, err := auth.Authenticate(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if p.Subject != "alice" || p.IdP != "google" || p.Family != "" || p.IssuedAt.Unix() != claims["iat"].(int64) ||
		p.ExpiresAt.Unix() != claims["exp"].(int64) || p.Identity.RevealString() != raw {
		t.Errorf("principal: %+v", p)
	}
	bad := raw[:len(raw)-4] + "AAAA"
	if _, err := auth.Authenticate(ctx, bad); !errors.Is(err, session.ErrUnauthenticated) || strings.Contains(err.Error(), bad[:20]) {
		t.Errorf("a bad signature: got %v, want ErrUnauthenticated without the token", err)
	}
	// The identity provider's key set cannot be fetched when a token names a key not yet seen.
	eager, err := oidc.New(ctx, oidc.Config{Issuer: iss.URL, Audience: "client-1", MinRefreshInterval: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	iss.AddKey(t, "k2", "ES256")
	iss.ServeJWKS([]byte("unavailable"), http.StatusServiceUnavailable)
	_, err = session.IDTokens{IdP: "google", Verifier: eager}.Authenticate(ctx, iss.Sign(t, "k2", iss.Claims("alice", "client-1"), nil))
	if err == nil || errors.Is(err, session.ErrUnauthenticated) || !errors.Is(err, oidc.ErrUnavailable) {
		t.Errorf("an unreachable identity provider: got %v, want oidc.ErrUnavailable and not ErrUnauthenticated", err)
	}
}

// TestJWKSKeysFollowCacheControl: a JWKS source uses a fetched set for as long as the response's
// Cache-Control allows (max-age; no-cache and no-store: not at all), within its own MaxAge and
// never less than MinRefreshInterval, so that a key withdrawn from the server's JWKS (which serve
// publishes with max-age=60) stops verifying within a minute rather than within MaxAge.
func TestJWKSKeysFollowCacheControl(t *testing.T) {
	for _, tc := range []struct {
		header string
		after  time.Duration
		fetch  bool
	}{
		{"public, max-age=60", 61 * time.Second, true},
		{"public, max-age=60", 50 * time.Second, false},
		{"no-store", 11 * time.Second, true},
		{"max-age=1", 5 * time.Second, false}, // MinRefreshInterval (10s) bounds it
		{"", time.Minute, false},              // MaxAge (5m) applies
		{"max-age=600", 2 * time.Minute, false},
		{"max-age=600", 6 * time.Minute, true},
	} {
		t.Run(fmt.Sprintf("%q after %v", tc.header, tc.after), func(t *testing.T) {
			f := newFixture(t, nil)
			jwks := newJWKSServer(t, f)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.header != "" {
					w.Header().Set("Cache-Control", tc.header)
				}
				jwks.Config.Handler.ServeHTTP(w, r)
			}))
			defer srv.Close()
			keys, err := token.NewJWKSKeys(context.Background(), token.JWKSConfig{URL: srv.URL, Now: f.clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			defer keys.Close()
			f.clk.Advance(tc.after)
			if _, err := keys.SigningKeys(context.Background()); err != nil {
				t.Fatal(err)
			}
			if !tc.fetch {
				time.Sleep(50 * time.Millisecond) // a background fetch, had one started, would have been made
				if n := jwks.hits.Load(); n != 1 {
					t.Errorf("%d fetches, want the first only", n)
				}
				return
			}
			for deadline := time.Now().Add(10 * time.Second); jwks.hits.Load() < 2; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the set was not fetched again")
				}
			}
		})
	}
}
