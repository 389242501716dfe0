package oidc_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/keyfort/keyfort/session/oidc"
	"github.com/keyfort/keyfort/session/oidc/oidctest"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func setup(t *testing.T) (*oidctest.Issuer, *oidc.Verifier, *clock) {
	t.Helper()
	iss := oidctest.New(t)
	clk := &clock{t: time.Now()}
	v, err := oidc.New(context.Background(), oidc.Config{Issuer: iss.URL, Audience: "client-1", Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	return iss, v, clk
}

func expect(t *testing.T, v *oidc.Verifier, tok string, want error) {
	t.Helper()
	_, err := v.Verify(context.Background(), tok)
	if !errors.Is(err, want) {
		t.Fatalf("got %v, want %v", err, want)
	}
	if err != nil && len(tok) > 40 && strings.Contains(err.Error(), tok[:40]) {
		t.Error("the error quotes the token")
	}
}

func enc(v any) string {
	raw, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(raw)
}

func TestValidTokens(t *testing.T) {
	iss, v, clk := setup(t)
	iss.AddKey(t, "ec", jose.ES256)
	iss.AddKey(t, "ed", jose.EdDSA)
	clk.advance(oidc.DefaultMinRefreshInterval) // new kids are fetched once the refresh interval allows
	for _, kid := range []string{"k1", "ec", "ed"} {
		tok := iss.Sign(t, kid, iss.Claims("alice", "client-1"), nil)
		got, err := v.Verify(context.Background(), tok)
		if err != nil {
			t.Fatalf("%s: %v", kid, err)
		}
		if got.Subject != "alice" || got.KeyID != kid || got.SignedPart != tok[:strings.LastIndexByte(tok, '.')] {
			t.Errorf("%s: got %+v", kid, got)
		}
	}
	multi := iss.Claims("bob", "client-1", "other")
	multi["azp"] = "client-1"
	if _, err := v.Verify(context.Background(), iss.Sign(t, "k1", multi, nil)); err != nil {
		t.Errorf("several audiences with azp ours: %v", err)
	}
}

func TestClaimChecks(t *testing.T) {
	iss, v, _ := setup(t)
	mk := func(mut func(map[string]any)) string {
		c := iss.Claims("alice", "client-1")
		mut(c)
		return iss.Sign(t, "k1", c, nil)
	}
	now := time.Now()
	tests := []struct {
		name string
		tok  string
		want error
	}{
		{"no exp", mk(func(c map[string]any) { delete(c, "exp") }), oidc.ErrMalformed},
		{"expired beyond skew", mk(func(c map[string]any) { c["exp"] = now.Add(-2 * time.Minute).Unix() }), oidc.ErrExpired},
		{"nbf in the future", mk(func(c map[string]any) { c["nbf"] = now.Add(5 * time.Minute).Unix() }), oidc.ErrNotYetValid},
		{"iat in the future", mk(func(c map[string]any) { c["iat"] = now.Add(5 * time.Minute).Unix() }), oidc.ErrNotYetValid},
		{"other issuer", mk(func(c map[string]any) { c["iss"] = "https://evil.test" }), oidc.ErrWrongIssuer},
		{"issuer with a trailing slash", mk(func(c map[string]any) { c["iss"] = iss.URL + "/" }), oidc.ErrWrongIssuer},
		{"other audience", mk(func(c map[string]any) { c["aud"] = "client-2" }), oidc.ErrWrongAudience},
		{"several audiences without azp", mk(func(c map[string]any) { c["aud"] = []string{"client-1", "client-2"} }), oidc.ErrWrongAudience},
		{"azp of another client", mk(func(c map[string]any) { c["azp"] = "client-2" }), oidc.ErrWrongAudience},
		{"no sub", mk(func(c map[string]any) { delete(c, "sub") }), oidc.ErrMalformed},
		{"exp as a string", mk(func(c map[string]any) { c["exp"] = "tomorrow" }), oidc.ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { expect(t, v, tc.tok, tc.want) })
	}
	within := mk(func(c map[string]any) { c["exp"] = now.Add(-30 * time.Second).Unix() })
	if _, err := v.Verify(context.Background(), within); err != nil {
		t.Errorf("expired within the skew: %v", err)
	}
}

func TestTypChecked(t *testing.T) {
	iss, v, _ := setup(t)
	tok := iss.Sign(t, "k1", iss.Claims("alice", "client-1"), map[string]any{"typ": "at+jwt"})
	expect(t, v, tok, oidc.ErrWrongType)
}

func TestGoogleAlternateIssuer(t *testing.T) {
	iss := oidctest.New(t)
	v, err := oidc.New(context.Background(), oidc.Config{Issuer: iss.URL, AlternateIssuers: []string{"accounts.test"}, Audience: "client-1"})
	if err != nil {
		t.Fatal(err)
	}
	c := iss.Claims("alice", "client-1")
	c["iss"] = "accounts.test"
	if _, err := v.Verify(context.Background(), iss.Sign(t, "k1", c, nil)); err != nil {
		t.Errorf("alternate issuer: %v", err)
	}
}

func TestDiscoveryIssuerMustMatch(t *testing.T) {
	iss := oidctest.New(t)
	_, err := oidc.New(context.Background(), oidc.Config{Issuer: iss.URL + "/", Audience: "x"})
	if err == nil || !strings.Contains(err.Error(), "names issuer") {
		t.Errorf("got %v, want a discovery issuer mismatch", err)
	}
}

func forge(t *testing.T, valid string, hdr map[string]any, sig []byte) string {
	t.Helper()
	p := strings.Split(valid, ".")
	return enc(hdr) + "." + p[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestAttackAlgNone(t *testing.T) {
	iss, v, _ := setup(t)
	valid := iss.Sign(t, "k1", iss.Claims("alice", "client-1"), nil)
	for _, alg := range []string{"none", "None", "NONE"} {
		expect(t, v, forge(t, valid, map[string]any{"alg": alg, "kid": "k1", "typ": "JWT"}, nil), oidc.ErrAlgorithm)
		expect(t, v, forge(t, valid, map[string]any{"alg": alg, "kid": "k1", "typ": "JWT"}, []byte("x")), oidc.ErrAlgorithm)
	}
}

func TestAttackRSHSConfusion(t *testing.T) {
	iss, v, _ := setup(t)
	valid := iss.Sign(t, "k1", iss.Claims("alice", "client-1"), nil)
	der, _ := x509.MarshalPKIXPublicKey(iss.PrivateKey("k1").Public())
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	h := enc(map[string]any{"alg": "HS256", "kid": "k1", "typ": "JWT"})
	input := h + "." + strings.Split(valid, ".")[1]
	m := hmac.New(sha256.New, pubPEM)
	m.Write([]byte(input))
	expect(t, v, input+"."+base64.RawURLEncoding.EncodeToString(m.Sum(nil)), oidc.ErrAlgorithm)
}

func TestAttackKeyAlgorithmFamilyMismatch(t *testing.T) {
	iss, v, _ := setup(t)
	valid := iss.Sign(t, "k1", iss.Claims("alice", "client-1"), nil)
	expect(t, v, forge(t, valid, map[string]any{"alg": "ES256", "kid": "k1", "typ": "JWT"}, make([]byte, 64)), oidc.ErrAlgorithm)
	expect(t, v, forge(t, valid, map[string]any{"alg": "EdDSA", "kid": "k1", "typ": "JWT"}, make([]byte, 64)), oidc.ErrAlgorithm)
}

func TestAttackECDSAZeroAndMalleatedS(t *testing.T) {
	iss, v, clk := setup(t)
	iss.AddKey(t, "ec", jose.ES256)
	clk.advance(oidc.DefaultMinRefreshInterval)
	valid := iss.Sign(t, "ec", iss.Claims("alice", "client-1"), nil)
	p := strings.Split(valid, ".")
	expect(t, v, p[0]+"."+p[1]+"."+base64.RawURLEncoding.EncodeToString(make([]byte, 64)), oidc.ErrSignature)

	sig, _ := base64.RawURLEncoding.DecodeString(p[2])
	n := elliptic.P256().Params().N
	s := new(big.Int).SetBytes(sig[32:])
	mall := make([]byte, 64)
	copy(mall, sig[:32])
	new(big.Int).Sub(n, s).FillBytes(mall[32:])
	other := p[0] + "." + p[1] + "." + base64.RawURLEncoding.EncodeToString(mall)
	d := sha256.Sum256([]byte(p[0] + "." + p[1]))
	pub := iss.PrivateKey("ec").Public().(*ecdsa.PublicKey)
	if !ecdsa.Verify(pub, d[:], new(big.Int).SetBytes(mall[:32]), new(big.Int).SetBytes(mall[32:])) {
		t.Fatal("test setup: the n−s signature is not valid ECDSA")
	}
	// An external issuer's signatures are not normalized, so the n−s twin verifies; what must hold is
	// that both forms are one token to sessions and revocation: the same signed part, the same key.
	a, err := v.Verify(context.Background(), valid)
	if err != nil {
		t.Fatal(err)
	}
	b, err := v.Verify(context.Background(), other)
	if err != nil {
		t.Fatalf("the n−s twin: %v", err)
	}
	key := []byte("session-key-secret-32-bytes-long")
	if oidc.SessionKey(key, a) != oidc.SessionKey(key, b) {
		t.Error("two encodings of one signed token give two session keys")
	}
}

func TestAttackNonCanonicalBase64(t *testing.T) {
	iss, v, _ := setup(t)
	valid := iss.Sign(t, "k1", iss.Claims("alice", "client-1"), nil)
	p := strings.Split(valid, ".")
	padded := p[0] + "." + p[1] + "=." + p[2]
	expect(t, v, padded, oidc.ErrMalformed)
	std := strings.NewReplacer("-", "+", "_", "/").Replace(valid)
	if std != valid {
		expect(t, v, std, oidc.ErrMalformed)
	}
	// Flip an unused trailing bit of the header segment when it has one.
	alphabet := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i, seg := range p[:2] {
		if len(seg)%4 == 0 {
			continue
		}
		last := strings.IndexByte(alphabet, seg[len(seg)-1])
		p2 := append([]string(nil), p...)
		p2[i] = seg[:len(seg)-1] + string(alphabet[last^1])
		expect(t, v, strings.Join(p2, "."), oidc.ErrMalformed)
	}
}

func TestAttackKidPathTraversalAndRefetchFlood(t *testing.T) {
	iss, v, clk := setup(t)
	clk.advance(oidc.DefaultMinRefreshInterval) // one refetch is allowed now, and only one
	before := iss.JWKSHits()
	valid := iss.Sign(t, "k1", iss.Claims("alice", "client-1"), nil)
	var wg sync.WaitGroup
	for i := range 500 {
		wg.Go(func() {
			kid := fmt.Sprintf("../../../../etc/passwd-%d", i)
			tok := forge(t, valid, map[string]any{"alg": "RS256", "kid": kid, "typ": "JWT"}, []byte("sig"))
			if _, err := v.Verify(context.Background(), tok); !errors.Is(err, oidc.ErrUnknownKey) {
				t.Errorf("kid %q: got %v, want ErrUnknownKey", kid, err)
			}
		})
	}
	wg.Wait()
	if fetched := iss.JWKSHits() - before; fetched != 1 {
		t.Errorf("500 unknown kids caused %d JWKS fetches, want exactly 1 in one refresh interval", fetched)
	}
}

func TestAttackHeadersThatRedirectVerification(t *testing.T) {
	var outbound atomic.Int64
	elsewhere := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { outbound.Add(1) }))
	defer elsewhere.Close()
	iss, v, _ := setup(t)
	for name, val := range map[string]any{
		"jwk":  map[string]any{"kty": "oct", "k": "AAAA"},
		"jku":  elsewhere.URL + "/jwks",
		"x5u":  elsewhere.URL + "/cert",
		"x5c":  []string{"MIIB"},
		"crit": []string{"exp"},
		"cty":  "JWT",
		"enc":  "A128GCM",
		"b64":  false,
	} {
		t.Run(name, func(t *testing.T) {
			expect(t, v, iss.Sign(t, "k1", iss.Claims("alice", "client-1"), map[string]any{name: val}), oidc.ErrMalformed)
		})
	}
	if n := outbound.Load(); n != 0 {
		t.Errorf("verification made %d requests to URLs named in tokens", n)
	}
}

func TestAttackShapes(t *testing.T) {
	iss, v, _ := setup(t)
	valid := iss.Sign(t, "k1", iss.Claims("alice", "client-1"), nil)
	for name, tok := range map[string]string{
		"JWE":        valid + ".x.y",
		"many dots":  strings.Repeat(".", 100000),
		"oversized":  strings.Repeat("A", oidc.DefaultMaxTokenSize+1),
		"JSON form":  `{"protected":"e30","payload":"e30","signature":""}`,
		"nested JWT": iss.Sign(t, "k1", map[string]any{"iss": iss.URL}, map[string]any{"cty": "JWT"}),
	} {
		t.Run(name, func(t *testing.T) { expect(t, v, tok, oidc.ErrMalformed) })
	}
}

func TestHugeJWKSKeepsLastGoodSet(t *testing.T) {
	iss, v, clk := setup(t)
	iss.ServeJWKS([]byte(`{"keys":[`+strings.Repeat(`{"kty":"RSA"},`, 200000)+`{}]}`), 0)
	clk.advance(2 * time.Hour) // the set is old: the next call tries a refresh
	claims := iss.Claims("alice", "client-1")
	claims["exp"] = time.Now().Add(24 * time.Hour).Unix()
	tok := iss.Sign(t, "k1", claims, nil)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Errorf("with a huge JWKS body the last good set must still verify: %v", err)
	}
	iss.ServeJWKS(nil, http.StatusInternalServerError)
	clk.advance(time.Minute)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Errorf("with the JWKS endpoint failing the last good set must still verify: %v", err)
	}
}

func TestRemovedKeyNoLongerAccepted(t *testing.T) {
	iss, v, clk := setup(t)
	claims := iss.Claims("alice", "client-1")
	claims["exp"] = time.Now().Add(24 * time.Hour).Unix()
	tok := iss.Sign(t, "k1", claims, nil)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	iss.AddKey(t, "k2", jose.ES256)
	iss.RemoveKey("k1")
	clk.advance(oidc.DefaultMinRefreshInterval)
	fresh := iss.Sign(t, "k2", claims, nil)
	if _, err := v.Verify(context.Background(), fresh); err != nil {
		t.Fatalf("a new kid is fetched on first sight: %v", err)
	}
	clk.advance(2 * time.Hour)
	expect(t, v, tok, oidc.ErrUnknownKey)
}

func TestClaimEdgeCases(t *testing.T) {
	iss, v, _ := setup(t)
	now := time.Now()
	mk := func(mut func(map[string]any)) string {
		c := iss.Claims("alice", "client-1")
		mut(c)
		return iss.Sign(t, "k1", c, nil)
	}
	tests := []struct {
		name string
		tok  string
		want error
	}{
		{"exp 0", mk(func(c map[string]any) { c["exp"] = 0 }), oidc.ErrExpired},
		{"exp just beyond the skew", mk(func(c map[string]any) { c["exp"] = now.Add(-oidc.DefaultSkew - time.Second).Unix() }), oidc.ErrExpired},
		{"nbf just beyond the skew", mk(func(c map[string]any) { c["nbf"] = now.Add(oidc.DefaultSkew + 2*time.Second).Unix() }), oidc.ErrNotYetValid},
		{"aud empty array", mk(func(c map[string]any) { c["aud"] = []string{} }), oidc.ErrWrongAudience},
		{"aud empty string", mk(func(c map[string]any) { c["aud"] = "" }), oidc.ErrWrongAudience},
		{"aud a number", mk(func(c map[string]any) { c["aud"] = 42 }), oidc.ErrMalformed},
		{"aud an object", mk(func(c map[string]any) { c["aud"] = map[string]any{"client-1": true} }), oidc.ErrMalformed},
		{"iss in upper case", mk(func(c map[string]any) { c["iss"] = strings.ToUpper(iss.URL) }), oidc.ErrWrongIssuer},
		{"iss over https instead of http", mk(func(c map[string]any) { c["iss"] = strings.Replace(iss.URL, "http://", "https://", 1) }), oidc.ErrWrongIssuer},
		{"iss missing", mk(func(c map[string]any) { delete(c, "iss") }), oidc.ErrWrongIssuer},
		{"sub a number", mk(func(c map[string]any) { c["sub"] = 7 }), oidc.ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { expect(t, v, tc.tok, tc.want) })
	}
	within := mk(func(c map[string]any) { c["nbf"] = now.Add(oidc.DefaultSkew - 5*time.Second).Unix() })
	if _, err := v.Verify(context.Background(), within); err != nil {
		t.Errorf("nbf within the skew: %v", err)
	}
}

func TestDuplicateClaimNames(t *testing.T) {
	iss, v, _ := setup(t)
	valid := iss.Sign(t, "k1", iss.Claims("alice", "client-1"), nil)
	p := strings.Split(valid, ".")
	claims, _ := base64.RawURLEncoding.DecodeString(p[1])
	dup := strings.TrimSuffix(string(claims), "}") + `,"sub":"admin"}`
	// The signature no longer matches, but the duplicate must be refused before anything else.
	expect(t, v, p[0]+"."+base64.RawURLEncoding.EncodeToString([]byte(dup))+"."+p[2], oidc.ErrMalformed)
}

// TestOwnTokenIsNoExternalToken presents a token of another issuer's shape (an access token type)
// where an ID token is expected.
func TestAccessTokenIsNoIDToken(t *testing.T) {
	iss, v, _ := setup(t)
	tok := iss.Sign(t, "k1", iss.Claims("alice", "client-1"), map[string]any{"typ": "at+jwt"})
	expect(t, v, tok, oidc.ErrWrongType)
}

func FuzzVerify(f *testing.F) {
	iss := oidctest.New(f)
	v, err := oidc.New(context.Background(), oidc.Config{Issuer: iss.URL, Audience: "client-1", MinRefreshInterval: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	valid := iss.Sign(f, "k1", iss.Claims("alice", "client-1"), nil)
	f.Add(valid)
	f.Add("e30.e30.")
	f.Fuzz(func(t *testing.T, tok string) {
		got, err := v.Verify(context.Background(), tok)
		if err == nil && got.SignedPart != valid[:strings.LastIndexByte(valid, '.')] {
			t.Fatalf("accepted a token the issuer never signed: %q", tok)
		}
	})
}
