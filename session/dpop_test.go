package session_test

import (
	"context"
	"crypto/x509"
	"errors"
	"net/url"
	"testing"

	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/dpop"
)

// TestCheckProof: a session bound to a DPoP key is its only with a proof of that key for the call
// and the token; a certificate, a forwarded identity or a proof of another key are refused, as is
// a proof at a session bound to a certificate's identity or with no Verifier to check it.
func TestCheckProof(t *testing.T) {
	key, _ := dpop.GenerateKey()
	other, _ := dpop.GenerateKey()
	f := newFixtureWith(t, nil, nil)
	cache, err := session.NewCache(session.CacheConfig{Authenticator: f.m})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cache.Close() })
	v, err := dpop.NewVerifier(dpop.Config{})
	if err != nil {
		t.Fatal(err)
	}
	const callURL = "https://kv.internal/pkg.KV/Get"
	access := f.startFor(t, key.Identity()).AccessToken
	s, err := cache.Get(context.Background(), access)
	if err != nil {
		t.Fatal(err)
	}
	if s.Principal.Client != key.Identity() {
		t.Fatalf("the access token is bound to %q, want %q (a DPoP key binds access tokens without BindAccessTokens)", s.Principal.Client, key.Identity())
	}
	proof := func(k *dpop.Key, tok string) []string {
		p, err := k.Proof("POST", callURL, tok)
		if err != nil {
			t.Fatal(err)
		}
		return []string{p}
	}
	if err := s.CheckProof(context.Background(), v, proof(key, access), "POST", callURL, access); err != nil {
		t.Fatalf("a proof of its key: %v", err)
	}
	named, _ := url.Parse(key.Identity())
	for name, err := range map[string]error{
		"a proof of another key":           s.CheckProof(context.Background(), v, proof(other, access), "POST", callURL, access),
		"no proof":                         s.CheckProof(context.Background(), v, nil, "POST", callURL, access),
		"two proofs":                       s.CheckProof(context.Background(), v, append(proof(key, access), proof(key, access)...), "POST", callURL, access),
		"no Verifier":                      s.CheckProof(context.Background(), nil, proof(key, access), "POST", callURL, access),
		"a proof for another token":        s.CheckProof(context.Background(), v, proof(key, access+"x"), "POST", callURL, access),
		"an identity naming the key":       s.CheckClientIdentity(key.Identity()),
		"a certificate whose URI names it": s.CheckClient(&x509.Certificate{URIs: []*url.URL{named}}),
	} {
		if !errors.Is(err, session.ErrClientMismatch) {
			t.Errorf("%s: %v, want ErrClientMismatch", name, err)
		}
	}
	fb := newFixtureWith(t, nil, func(c *session.Config) { c.BindAccessTokens = true })
	cacheB, err := session.NewCache(session.CacheConfig{Authenticator: fb.m})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cacheB.Close() })
	certAccess := fb.startFor(t, "spiffe://keyfort.test/gateway").AccessToken
	certBound, err := cacheB.Get(context.Background(), certAccess)
	if err != nil {
		t.Fatal(err)
	}
	if err := certBound.CheckProof(context.Background(), v, proof(key, certAccess), "POST", callURL, certAccess); !errors.Is(err, session.ErrClientMismatch) {
		t.Errorf("a proof at a session bound to a certificate: %v, want ErrClientMismatch", err)
	}
}
