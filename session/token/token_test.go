package token_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
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

	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/session/token"
)

var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// keys is a mutable key source, as a provider's rotations make it.
type keys struct {
	mu sync.Mutex
	ks provider.KeySet
}

func (k *keys) SigningKeys(context.Context) (provider.KeySet, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.ks, nil
}

func (k *keys) set(ks provider.KeySet) { k.mu.Lock(); k.ks = ks; k.mu.Unlock() }

func newKeys(t *testing.T, alg provider.Algorithm) (*keys, provider.Key) {
	t.Helper()
	k, err := provider.GenerateKey(alg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &keys{ks: provider.KeySet{Name: "session", ActiveID: k.ID, Keys: []provider.Key{k}}}, k
}

func newCodec(t *testing.T, src token.KeySource) *token.Codec {
	t.Helper()
	c, err := token.New(token.Config{Issuer: "https://keyfort.test", Keys: src, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func claims() token.Claims {
	return token.Claims{Subject: "alice", Audience: "api", ExpiresAt: now.Add(time.Hour).Unix(), ID: "j1", Tenant: "t1"}
}

func TestRoundTripEveryAlgorithm(t *testing.T) {
	for _, alg := range provider.Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			src, k := newKeys(t, alg)
			c := newCodec(t, src)
			tok, err := c.Sign(context.Background(), token.TypeAccess, claims())
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Verify(context.Background(), tok, token.TypeAccess, "api")
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.Subject != "alice" || got.Issuer != "https://keyfort.test" || got.IssuedAt != now.Unix() {
				t.Errorf("claims: got %+v", got)
			}
			h := decodeSegment(t, tok, 0)
			if h["kid"] != k.ID || h["alg"] != string(alg) || h["typ"] != token.TypeAccess || len(h) != 3 {
				t.Errorf("header: got %v", h)
			}
		})
	}
}

// remote signs with a private key the Codec never sees, as Vault Transit does.
type remote struct{ priv crypto.Signer }

func (r remote) Sign(_ context.Context, _ string, payload []byte) ([]byte, error) {
	return r.priv.Sign(nil, payload, crypto.Hash(0))
}

func TestRemoteSignerForPublicOnlyKeys(t *testing.T) {
	k, _ := provider.GenerateKey(provider.EdDSA, nil)
	priv, _ := k.PrivateKey()
	pub := k
	pub.Private = provider.Sensitive{}
	src := &keys{ks: provider.KeySet{Name: "s", ActiveID: pub.ID, Keys: []provider.Key{pub}}}
	c, err := token.New(token.Config{Issuer: "https://keyfort.test", Keys: src, Signer: remote{priv}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Sign(context.Background(), token.TypeAccess, claims())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Verify(context.Background(), tok, token.TypeAccess, "api"); err != nil {
		t.Fatal(err)
	}
	noSigner := newCodec(t, src)
	if _, err := noSigner.Sign(context.Background(), token.TypeAccess, claims()); err == nil {
		t.Error("signing with a public-only key and no remote signer succeeded")
	}
}

func decodeSegment(t *testing.T, tok string, i int) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func enc(v any) string {
	raw, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(raw)
}

// forge builds a token from a header and the claims of a valid token, with signature sig.
func forge(t *testing.T, valid string, hdr map[string]any, sig []byte) string {
	t.Helper()
	parts := strings.Split(valid, ".")
	return enc(hdr) + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func hs256(secret []byte, input string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(input))
	return m.Sum(nil)
}

func expect(t *testing.T, c *token.Codec, tok string, want error) {
	t.Helper()
	_, err := c.Verify(context.Background(), tok, token.TypeAccess, "api")
	if !errors.Is(err, want) {
		t.Fatalf("got %v, want %v", err, want)
	}
}

func TestAttackAlgNone(t *testing.T) {
	src, k := newKeys(t, provider.EdDSA)
	c := newCodec(t, src)
	valid, _ := c.Sign(context.Background(), token.TypeAccess, claims())
	for _, alg := range []string{"none", "None", "NONE", "nOnE"} {
		expect(t, c, forge(t, valid, map[string]any{"alg": alg, "kid": k.ID, "typ": token.TypeAccess}, nil), token.ErrAlgorithm)
	}
}

func TestAttackRSHSConfusion(t *testing.T) {
	src, k := newKeys(t, provider.RS256)
	c := newCodec(t, src)
	valid, _ := c.Sign(context.Background(), token.TypeAccess, claims())
	h := map[string]any{"alg": "HS256", "kid": k.ID, "typ": token.TypeAccess}
	parts := strings.Split(valid, ".")
	input := enc(h) + "." + parts[1]
	// HMAC keyed with the public key's bytes, the classic confusion.
	expect(t, c, input+"."+base64.RawURLEncoding.EncodeToString(hs256(k.Public, input)), token.ErrAlgorithm)
}

func TestAttackKeyAlgorithmFamilyMismatch(t *testing.T) {
	src, k := newKeys(t, provider.ES256)
	c := newCodec(t, src)
	valid, _ := c.Sign(context.Background(), token.TypeAccess, claims())
	parts := strings.Split(valid, ".")
	for _, alg := range []string{"EdDSA", "RS256", "ES384", "PS256"} {
		expect(t, c, forge(t, valid, map[string]any{"alg": alg, "kid": k.ID, "typ": token.TypeAccess}, []byte(parts[2])), token.ErrAlgorithm)
	}
}

func TestAttackECDSAZeroAndHighS(t *testing.T) {
	src, _ := newKeys(t, provider.ES256)
	c := newCodec(t, src)
	valid, _ := c.Sign(context.Background(), token.TypeAccess, claims())
	parts := strings.Split(valid, ".")
	expect(t, c, parts[0]+"."+parts[1]+"."+base64.RawURLEncoding.EncodeToString(make([]byte, 64)), token.ErrSignature)
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	n := elliptic.P256().Params().N
	s := new(big.Int).SetBytes(sig[32:])
	high := new(big.Int).Sub(n, s) // s → n−s: still a valid ECDSA signature, but a second form
	mall := make([]byte, 64)
	copy(mall, sig[:32])
	high.FillBytes(mall[32:])
	// Prove the malleated signature is mathematically valid, so the refusal is ours.
	pub, _ := src.ks.Keys[0].PublicKey()
	d := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(pub.(*ecdsa.PublicKey), d[:], new(big.Int).SetBytes(mall[:32]), high) {
		t.Fatal("test setup: the n−s signature does not verify with crypto/ecdsa")
	}
	expect(t, c, parts[0]+"."+parts[1]+"."+base64.RawURLEncoding.EncodeToString(mall), token.ErrSignature)
}

func TestAttackNonCanonicalBase64(t *testing.T) {
	src, _ := newKeys(t, provider.EdDSA)
	c := newCodec(t, src)
	valid, _ := c.Sign(context.Background(), token.TypeAccess, claims())
	parts := strings.Split(valid, ".")
	// An Ed25519 signature is 64 bytes: 86 base64url characters whose last one carries 4 unused bits.
	sig := parts[2]
	last := sig[len(sig)-1]
	alphabet := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	idx := strings.IndexByte(alphabet, last)
	variant := alphabet[idx^1] // flips an unused bit: same bytes under lax decoding
	expect(t, c, parts[0]+"."+parts[1]+"."+sig[:len(sig)-1]+string(variant), token.ErrMalformed)
	expect(t, c, parts[0]+"."+parts[1]+"."+sig+"==", token.ErrMalformed)
	expect(t, c, parts[0]+"."+parts[1]+"+/."+sig, token.ErrMalformed)
}

func TestAttackKidPathTraversal(t *testing.T) {
	src, _ := newKeys(t, provider.HS256)
	c := newCodec(t, src)
	valid, _ := c.Sign(context.Background(), token.TypeAccess, claims())
	for _, kid := range []string{"../../../../dev/null", "/etc/passwd", "' OR 1=1 --", ""} {
		h := map[string]any{"alg": "HS256", "kid": kid, "typ": token.TypeAccess}
		parts := strings.Split(valid, ".")
		input := enc(h) + "." + parts[1]
		expect(t, c, input+"."+base64.RawURLEncoding.EncodeToString(hs256(nil, input)), token.ErrUnknownKey)
	}
}

func TestAttackEmbeddedKeyAndRemoteKeyHeaders(t *testing.T) {
	var fetched atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fetched.Add(1) }))
	defer srv.Close()
	src, k := newKeys(t, provider.EdDSA)
	c := newCodec(t, src)
	valid, _ := c.Sign(context.Background(), token.TypeAccess, claims())
	sig, _ := base64.RawURLEncoding.DecodeString(strings.Split(valid, ".")[2])
	for name, extra := range map[string]any{
		"jwk":  map[string]any{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
		"jku":  srv.URL + "/jwks.json",
		"x5u":  srv.URL + "/cert.pem",
		"x5c":  []string{"MIIB"},
		"crit": []string{"exp"},
		"cty":  "JWT",
		"enc":  "A256GCM",
		"zip":  "DEF",
	} {
		t.Run(name, func(t *testing.T) {
			h := map[string]any{"alg": "EdDSA", "kid": k.ID, "typ": token.TypeAccess, name: extra}
			expect(t, c, forge(t, valid, h, sig), token.ErrMalformed)
		})
	}
	if n := fetched.Load(); n != 0 {
		t.Errorf("verification made %d outbound requests", n)
	}
}

func TestAttackNestedJWEAndShapes(t *testing.T) {
	src, _ := newKeys(t, provider.EdDSA)
	c := newCodec(t, src)
	valid, _ := c.Sign(context.Background(), token.TypeAccess, claims())
	for name, tok := range map[string]string{
		"JWE (five segments)": valid + ".aaaa.bbbb",
		"many dots":           strings.Repeat(".", 5000),
		"two segments":        strings.Join(strings.Split(valid, ".")[:2], "."),
		"oversized":           strings.Repeat("a", token.DefaultMaxSize+1),
		"empty":               "",
		"JSON serialization":  `{"payload":"x","signatures":[]}`,
	} {
		t.Run(name, func(t *testing.T) { expect(t, c, tok, token.ErrMalformed) })
	}
}

func TestRemovedKeyNoLongerAccepted(t *testing.T) {
	src, _ := newKeys(t, provider.EdDSA)
	c := newCodec(t, src)
	old, _ := c.Sign(context.Background(), token.TypeAccess, claims())
	next, _ := provider.GenerateKey(provider.EdDSA, nil)
	rotated := provider.KeySet{Name: "session", ActiveID: next.ID, Keys: []provider.Key{next, src.ks.Keys[0]}}
	src.set(rotated)
	if _, err := c.Verify(context.Background(), old, token.TypeAccess, "api"); err != nil {
		t.Fatalf("the previous key still verifies after rotation: %v", err)
	}
	fresh, _ := c.Sign(context.Background(), token.TypeAccess, claims())
	if h := decodeSegment(t, fresh, 0); h["kid"] != next.ID {
		t.Errorf("signing kid after rotation: got %v, want %s", h["kid"], next.ID)
	}
	src.set(provider.KeySet{Name: "session", ActiveID: next.ID, Keys: []provider.Key{next}})
	expect(t, c, old, token.ErrUnknownKey)
}

func TestClaimsChecks(t *testing.T) {
	src, _ := newKeys(t, provider.HS256)
	c := newCodec(t, src)
	ctx := context.Background()
	sign := func(mut func(*token.Claims), typ string) string {
		cl := claims()
		mut(&cl)
		tok, err := c.Sign(ctx, typ, cl)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tests := []struct {
		name string
		tok  string
		want error
	}{
		{"expired", sign(func(c *token.Claims) { c.ExpiresAt = now.Unix() }, token.TypeAccess), token.ErrExpired},
		{"not yet valid", sign(func(c *token.Claims) { c.NotBefore = now.Add(time.Minute).Unix() }, token.TypeAccess), token.ErrNotYetValid},
		{"issued in the future", sign(func(c *token.Claims) { c.IssuedAt = now.Add(time.Minute).Unix() }, token.TypeAccess), token.ErrNotYetValid},
		{"refresh token as access token", sign(func(*token.Claims) {}, token.TypeRefresh), token.ErrWrongType},
		{"other audience", sign(func(c *token.Claims) { c.Audience = "other" }, token.TypeAccess), token.ErrWrongAudience},
		{"other issuer", sign(func(c *token.Claims) { c.Issuer = "https://evil.test" }, token.TypeAccess), token.ErrWrongIssuer},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { expect(t, c, tc.tok, tc.want) })
	}
	within := sign(func(c *token.Claims) { c.NotBefore = now.Add(3 * time.Second).Unix() }, token.TypeAccess)
	if _, err := c.Verify(ctx, within, token.TypeAccess, "api"); err != nil {
		t.Errorf("nbf within the skew: %v", err)
	}
	if _, err := c.Sign(ctx, token.TypeAccess, token.Claims{Subject: "x"}); err == nil {
		t.Error("a token without exp was signed")
	}
}

func TestUnknownClaimsRefused(t *testing.T) {
	src, k := newKeys(t, provider.HS256)
	c := newCodec(t, src)
	h := enc(map[string]any{"alg": "HS256", "kid": k.ID, "typ": token.TypeAccess})
	p := enc(map[string]any{"iss": "https://keyfort.test", "aud": "api", "exp": now.Add(time.Hour).Unix(), "admin": true})
	input := h + "." + p
	expect(t, c, input+"."+base64.RawURLEncoding.EncodeToString(hs256(k.Private.Reveal(), input)), token.ErrMalformed)
}

func FuzzVerify(f *testing.F) {
	k, _ := provider.GenerateKey(provider.HS256, nil)
	src := &keys{ks: provider.KeySet{Name: "s", ActiveID: k.ID, Keys: []provider.Key{k}}}
	c, _ := token.New(token.Config{Issuer: "https://keyfort.test", Keys: src, Now: func() time.Time { return now }})
	valid, _ := c.Sign(context.Background(), token.TypeAccess, claims())
	f.Add(valid)
	f.Add("a.b.c")
	f.Add(strings.Repeat(".", 10))
	f.Fuzz(func(t *testing.T, tok string) {
		cl, err := c.Verify(context.Background(), tok, token.TypeAccess, "api")
		if err == nil && tok != valid {
			// Any other accepted token must carry a valid MAC over its own bytes.
			parts := strings.Split(tok, ".")
			mac := hs256(k.Private.Reveal(), parts[0]+"."+parts[1])
			if base64.RawURLEncoding.EncodeToString(mac) != parts[2] || cl.Subject == "" {
				t.Fatalf("accepted a forged token %q", tok)
			}
		}
	})
}

func TestDuplicateClaimNamesRefused(t *testing.T) {
	src, k := newKeys(t, provider.HS256)
	c := newCodec(t, src)
	h := enc(map[string]any{"alg": "HS256", "kid": k.ID, "typ": token.TypeAccess})
	raw := `{"iss":"https://keyfort.test","sub":"alice","aud":"api","exp":` + fmt.Sprint(now.Add(time.Hour).Unix()) + `,"iat":1,"jti":"j","sub":"admin"}`
	p := base64.RawURLEncoding.EncodeToString([]byte(raw))
	input := h + "." + p
	expect(t, c, input+"."+base64.RawURLEncoding.EncodeToString(hs256(k.Private.Reveal(), input)), token.ErrMalformed)
	dupHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","kid":"` + k.ID + `","typ":"at+jwt","alg":"none"}`))
	input = dupHeader + "." + p
	expect(t, c, input+"."+base64.RawURLEncoding.EncodeToString(hs256(k.Private.Reveal(), input)), token.ErrMalformed)
}

func TestShortHMACKeyRefused(t *testing.T) {
	short := provider.Key{ID: "short", Algorithm: provider.HS256, Private: provider.SensitiveString("sixteen-byte-key")}
	c := newCodec(t, &keys{ks: provider.KeySet{Name: "s", ActiveID: "short", Keys: []provider.Key{short}}})
	if _, err := c.Sign(context.Background(), token.TypeAccess, claims()); err == nil || !strings.Contains(err.Error(), "shorter than 32") {
		t.Errorf("got %v, want a refusal of the 16-byte HMAC key", err)
	}
}

// Verify's claims share no memory with its pooled buffers: claims returned earlier stay intact while
// other tokens are verified, concurrently too.
func TestVerifiedClaimsAreStable(t *testing.T) {
	src, _ := newKeys(t, provider.HS256)
	c := newCodec(t, src)
	ctx := context.Background()
	sign := func(sub string) string {
		cl := claims()
		cl.Subject, cl.ID = sub, "jti-"+sub
		tok, err := c.Sign(ctx, token.TypeAccess, cl)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	first, err := c.Verify(ctx, sign("alice"), token.TypeAccess, "api")
	if err != nil {
		t.Fatal(err)
	}
	other := sign("mallory-with-a-longer-subject")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 500 {
				if _, err := c.Verify(ctx, other, token.TypeAccess, "api"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if first.Subject != "alice" || first.ID != "jti-alice" || first.Tenant != "t1" || first.Audience != "api" {
		t.Errorf("claims changed after other verifications: %+v", first)
	}
}

// TestRevokedKey: with Config.Revoked, a token of a revoked kid fails with ErrRevokedKey (and names
// the kid), the revoked active key signs nothing, and the other keys of the set are unaffected;
// KeyID reads a token's kid without verifying it, and refuses what is not a JWS header.
func TestRevokedKey(t *testing.T) {
	ctx := context.Background()
	src, old := newKeys(t, provider.EdDSA)
	fresh, err := provider.GenerateKey(provider.EdDSA, nil)
	if err != nil {
		t.Fatal(err)
	}
	var revoked sync.Map
	c, err := token.New(token.Config{Issuer: "https://keyfort.test", Keys: src, Now: func() time.Time { return now },
		Revoked: func(kid string) bool { _, ok := revoked.Load(kid); return ok }})
	if err != nil {
		t.Fatal(err)
	}
	oldTok, err := c.Sign(ctx, token.TypeAccess, claims())
	if err != nil {
		t.Fatal(err)
	}
	src.set(provider.KeySet{Name: "session", ActiveID: fresh.ID, Keys: []provider.Key{fresh, old}})
	freshTok, err := c.Sign(ctx, token.TypeAccess, claims())
	if err != nil {
		t.Fatal(err)
	}
	if kid, ok := token.KeyID(oldTok); !ok || kid != old.ID {
		t.Fatalf("KeyID: %q, %v; want %q", kid, ok, old.ID)
	}
	revoked.Store(old.ID, true)
	if _, err := c.Verify(ctx, oldTok, token.TypeAccess, "api"); !errors.Is(err, token.ErrRevokedKey) || !strings.Contains(err.Error(), old.ID) {
		t.Errorf("a token of the revoked key: got %v, want ErrRevokedKey naming %q", err, old.ID)
	}
	if _, err := c.Verify(ctx, freshTok, token.TypeAccess, "api"); err != nil {
		t.Errorf("a token of the other key: %v", err)
	}
	revoked.Store(fresh.ID, true)
	if _, err := c.Sign(ctx, token.TypeAccess, claims()); !errors.Is(err, token.ErrRevokedKey) || !strings.Contains(err.Error(), fresh.ID) {
		t.Errorf("Sign with the revoked active key: got %v, want ErrRevokedKey naming %q", err, fresh.ID)
	}
	for _, bad := range []string{"", "nodot", "!!!.x.y", "e30.x.y" /* {} */, strings.Repeat("A", 400) + ".x.y"} {
		if kid, ok := token.KeyID(bad); (ok && kid != "") || (bad != "e30.x.y" && ok) {
			t.Errorf("KeyID(%.20q) = %q, %v", bad, kid, ok)
		}
	}
}
