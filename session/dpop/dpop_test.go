package dpop_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyfort/keyfort/internal/metrictest"
	"github.com/keyfort/keyfort/session/dpop"
)

const (
	callURL = "https://api.example.com/keyfort.kv.v1.KV/Get"
	token   = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
)

var b64 = base64.RawURLEncoding

// clock is a settable clock for Config.Now.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// forged signs header and claims (JSON as given) with priv under alg: proofs no honest Key makes.
func forged(t testing.TB, priv crypto.Signer, alg, header, claims string) string {
	t.Helper()
	input := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString([]byte(claims))
	d := sha256.Sum256([]byte(input))
	var sig []byte
	var err error
	switch alg {
	case "EdDSA":
		sig = ed25519.Sign(priv.(ed25519.PrivateKey), []byte(input))
	case "ES256":
		var r, s *big.Int
		r, s, err = ecdsa.Sign(rand.Reader, priv.(*ecdsa.PrivateKey), d[:])
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	case "RS256":
		sig, err = rsa.SignPKCS1v15(rand.Reader, priv.(*rsa.PrivateKey), crypto.SHA256, d[:])
	case "PS256":
		sig, err = rsa.SignPSS(rand.Reader, priv.(*rsa.PrivateKey), crypto.SHA256, d[:], nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64.EncodeToString(sig)
}

func jwkOf(t testing.TB, key any) string {
	t.Helper()
	j, err := (&jose.JSONWebKey{Key: key}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(j)
}

func claimsAt(iat int64, extra string) string {
	return `{"jti":"j-` + strings.Repeat("x", 4) + `","htm":"POST","htu":"` + callURL + `","iat":` + jsonInt(iat) + extra + `}`
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

func ath(tok string) string { return dpop.AccessTokenHash(tok) }

// TestProofRoundTrip: a Key's proofs verify for the call and token they name, for each algorithm,
// and prove the Key's identity.
func TestProofRoundTrip(t *testing.T) {
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	ecPriv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaPriv, _ := rsa.GenerateKey(rand.Reader, 2048)
	v := mustVerifier(t, dpop.Config{})
	for _, priv := range []crypto.Signer{edPriv, ecPriv, rsaPriv} {
		k, err := dpop.NewKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(k.Algorithm(), func(t *testing.T) {
			for _, tok := range []string{"", token} {
				p, err := k.Proof("POST", callURL+"?q=1#f", tok)
				if err != nil {
					t.Fatal(err)
				}
				id, err := v.Verify(p, "POST", callURL, tok)
				if err != nil || id != k.Identity() || id != "dpop:"+k.Thumbprint() {
					t.Fatalf("token %q: %q, %v; want %q", tok, id, err, k.Identity())
				}
			}
			if s := k.String(); !strings.Contains(s, k.Thumbprint()) {
				t.Errorf("String %q does not name the thumbprint", s)
			}
		})
	}
	if _, err := dpop.NewKey(mustRSA(t, 1024)); err == nil {
		t.Error("NewKey accepted a 1024-bit RSA key")
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := dpop.NewKey(p384); err == nil {
		t.Error("NewKey accepted a P-384 key")
	}
}

// TestAlgorithms: the algorithms the challenge lists (Algorithms) are those a Verifier accepts: a
// proof signed with each verifies, and one with an algorithm not listed (ES384) does not.
func TestAlgorithms(t *testing.T) {
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	ecPriv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaPriv := mustRSA(t, 2048)
	keys := map[string]crypto.Signer{"EdDSA": edPriv, "ES256": ecPriv, "RS256": rsaPriv, "PS256": rsaPriv}
	v := mustVerifier(t, dpop.Config{})
	now := time.Now().Unix()
	for i, alg := range strings.Fields(dpop.Algorithms) {
		priv, ok := keys[alg]
		if !ok {
			t.Fatalf("Algorithms lists %s, which this test cannot sign", alg)
		}
		header := `{"typ":"dpop+jwt","alg":"` + alg + `","jwk":` + jwkOf(t, priv.Public()) + `}`
		claims := `{"jti":"alg-` + jsonInt(int64(i)) + `","htm":"POST","htu":"` + callURL + `","iat":` + jsonInt(now) + `}`
		if _, err := v.Verify(forged(t, priv, alg, header, claims), "POST", callURL, ""); err != nil {
			t.Errorf("%s, listed: %v", alg, err)
		}
	}
	if len(strings.Fields(dpop.Algorithms)) != len(keys) {
		t.Errorf("Algorithms %q, want the %d this test signs", dpop.Algorithms, len(keys))
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	header := `{"typ":"dpop+jwt","alg":"ES384","jwk":` + jwkOf(t, p384.Public()) + `}`
	claims := `{"jti":"alg-384","htm":"POST","htu":"` + callURL + `","iat":` + jsonInt(now) + `}`
	input := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString([]byte(claims))
	if _, err := v.Verify(input+"."+b64.EncodeToString(make([]byte, 96)), "POST", callURL, ""); !errors.Is(err, dpop.ErrInvalidProof) {
		t.Errorf("ES384, not listed: %v, want ErrInvalidProof", err)
	}
}

func mustRSA(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestProofAttacks: every way a proof can be wrong is refused with ErrInvalidProof, and the
// refusal never quotes the proof's signature or the access token.
func TestProofAttacks(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ecPriv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	rsaPriv := mustRSA(t, 2048)
	ecJWK, edJWK, rsaJWK := jwkOf(t, ecPriv.Public()), jwkOf(t, edPriv.Public()), jwkOf(t, rsaPriv.Public())
	hdr := func(alg, jwk string) string { return `{"typ":"dpop+jwt","alg":"` + alg + `","jwk":` + jwk + `}` }
	good := claimsAt(now.Unix(), `,"ath":"`+ath(token)+`"`)
	ecGood := forged(t, ecPriv, "ES256", hdr("ES256", ecJWK), good)
	segs := strings.Split(ecGood, ".")
	weakRSA := mustRSA(t, 1024)
	// A public key alone: the size is refused before any signature check.
	hugeN := new(big.Int).SetBit(big.NewInt(1), 5119, 1)
	hugeJWK := jwkOf(t, &rsa.PublicKey{N: hugeN.Add(hugeN, big.NewInt(1)), E: 65537})
	privJWK, _ := (&jose.JSONWebKey{Key: ecPriv}).MarshalJSON()
	n := elliptic.P256().Params().N
	sigWith := func(r, s *big.Int) string {
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return segs[0] + "." + segs[1] + "." + b64.EncodeToString(sig)
	}

	cases := []struct{ name, proof string }{
		{"alg none", segs[0][:0] + b64.EncodeToString([]byte(`{"typ":"dpop+jwt","alg":"none","jwk":`+ecJWK+`}`)) + "." + segs[1] + "."},
		{"alg NONE", b64.EncodeToString([]byte(`{"typ":"dpop+jwt","alg":"NONE","jwk":`+ecJWK+`}`)) + "." + segs[1] + "." + segs[2]},
		{"HS256 with a symmetric jwk", func() string {
			h := `{"typ":"dpop+jwt","alg":"HS256","jwk":{"kty":"oct","k":"` + b64.EncodeToString(make([]byte, 32)) + `"}}`
			return b64.EncodeToString([]byte(h)) + "." + segs[1] + "." + segs[2]
		}()},
		{"typ JWT", forged(t, ecPriv, "ES256", `{"typ":"JWT","alg":"ES256","jwk":`+ecJWK+`}`, good)},
		{"no typ", forged(t, ecPriv, "ES256", `{"alg":"ES256","jwk":`+ecJWK+`}`, good)},
		{"no jwk", forged(t, ecPriv, "ES256", `{"typ":"dpop+jwt","alg":"ES256"}`, good)},
		{"jku", forged(t, ecPriv, "ES256", `{"typ":"dpop+jwt","alg":"ES256","jwk":`+ecJWK+`,"jku":"https://evil.example/jwks"}`, good)},
		{"x5u", forged(t, ecPriv, "ES256", `{"typ":"dpop+jwt","alg":"ES256","jwk":`+ecJWK+`,"x5u":"https://evil.example/c"}`, good)},
		{"kid", forged(t, ecPriv, "ES256", `{"typ":"dpop+jwt","alg":"ES256","jwk":`+ecJWK+`,"kid":"../../etc/passwd"}`, good)},
		{"crit", forged(t, ecPriv, "ES256", `{"typ":"dpop+jwt","alg":"ES256","jwk":`+ecJWK+`,"crit":["exp"]}`, good)},
		{"duplicate header alg", forged(t, ecPriv, "ES256", `{"typ":"dpop+jwt","alg":"ES256","alg":"ES256","jwk":`+ecJWK+`}`, good)},
		{"escaped header name", forged(t, ecPriv, "ES256", `{"typ":"dpop+jwt","al\u0067":"ES256","jwk":`+ecJWK+`}`, good)},
		{"private key in jwk", forged(t, ecPriv, "ES256", hdr("ES256", string(privJWK)), good)},
		{"EdDSA header, EC key", forged(t, ecPriv, "ES256", hdr("EdDSA", ecJWK), good)},
		{"ES256 header, RSA key", forged(t, rsaPriv, "RS256", hdr("ES256", rsaJWK), good)},
		{"RS256 header, Ed25519 key", forged(t, edPriv, "EdDSA", hdr("RS256", edJWK), good)},
		{"1024-bit RSA", forged(t, weakRSA, "RS256", hdr("RS256", jwkOf(t, weakRSA.Public())), good)},
		{"5120-bit RSA", b64.EncodeToString([]byte(hdr("RS256", hugeJWK))) + "." + segs[1] + "." + segs[2]},
		{"signed by another key", forged(t, edPriv, "EdDSA", hdr("ES256", ecJWK), good)},
		{"bad signature", segs[0] + "." + segs[1] + "." + b64.EncodeToString(make([]byte, 64))},
		{"ECDSA r=s=0", sigWith(big.NewInt(0), big.NewInt(0))},
		{"ECDSA s=n", sigWith(big.NewInt(1), n)},
		{"padded header", segs[0] + "=." + segs[1] + "." + segs[2]},
		{"non-canonical signature bits", segs[0] + "." + segs[1] + "." + segs[2][:len(segs[2])-1] + string(segs[2][len(segs[2])-1]^1)},
		{"two segments", segs[0] + "." + segs[1]},
		{"four segments", ecGood + "." + segs[2]},
		{"oversized", forged(t, ecPriv, "ES256", hdr("ES256", ecJWK), claimsAt(now.Unix(), `,"pad":"`+strings.Repeat("p", dpop.DefaultMaxSize)+`"`))},
		{"duplicate jti", forged(t, ecPriv, "ES256", hdr("ES256", ecJWK), `{"jti":"a","jti":"b","htm":"POST","htu":"`+callURL+`","iat":`+jsonInt(now.Unix())+`,"ath":"`+ath(token)+`"}`)},
		{"no jti", forged(t, ecPriv, "ES256", hdr("ES256", ecJWK), `{"htm":"POST","htu":"`+callURL+`","iat":`+jsonInt(now.Unix())+`,"ath":"`+ath(token)+`"}`)},
		{"long jti", forged(t, ecPriv, "ES256", hdr("ES256", ecJWK), `{"jti":"`+strings.Repeat("j", 257)+`","htm":"POST","htu":"`+callURL+`","iat":`+jsonInt(now.Unix())+`,"ath":"`+ath(token)+`"}`)},
		{"no htm", forged(t, ecPriv, "ES256", hdr("ES256", ecJWK), `{"jti":"a","htu":"`+callURL+`","iat":`+jsonInt(now.Unix())+`,"ath":"`+ath(token)+`"}`)},
		{"htm GET", forged(t, ecPriv, "ES256", hdr("ES256", ecJWK), strings.Replace(good, `"POST"`, `"GET"`, 1))},
		{"htm post", forged(t, ecPriv, "ES256", hdr("ES256", ecJWK), strings.Replace(good, `"POST"`, `"post"`, 1))},
		{"htu of another method", forged(t, ecPriv, "ES256", hdr("ES256", ecJWK), strings.Replace(good, "KV/Get", "KV/Put", 1))},
		{"htu of another host", forged(t, ecPriv, "ES256", hdr("ES256", ecJWK), strings.Replace(good, "api.example.com", "api.example.org", 1))},
		{"htu over http", forged(t, ecPriv, "ES256", hdr("ES256", ecJWK), strings.Replace(good, "https://", "http://", 1))},
		{"htu relative", forged(t, ecPriv, "ES256", hdr("ES256", ecJWK), strings.Replace(good, "https://api.example.com", "", 1))},
		{"iat too old", forged(t, ecPriv, "ES256", hdr("ES256", ecJWK), claimsAt(now.Add(-dpop.DefaultMaxAge-time.Second).Unix(), `,"ath":"`+ath(token)+`"`))},
		{"iat in the future", forged(t, ecPriv, "ES256", hdr("ES256", ecJWK), claimsAt(now.Add(dpop.DefaultSkew+time.Second).Unix(), `,"ath":"`+ath(token)+`"`))},
		{"iat a string", forged(t, ecPriv, "ES256", hdr("ES256", ecJWK), strings.Replace(good, `"iat":`+jsonInt(now.Unix()), `"iat":"`+jsonInt(now.Unix())+`"`, 1))},
		{"no iat", forged(t, ecPriv, "ES256", hdr("ES256", ecJWK), `{"jti":"a","htm":"POST","htu":"`+callURL+`","ath":"`+ath(token)+`"}`)},
		{"no ath", forged(t, ecPriv, "ES256", hdr("ES256", ecJWK), claimsAt(now.Unix(), ""))},
		{"ath of another token", forged(t, ecPriv, "ES256", hdr("ES256", ecJWK), claimsAt(now.Unix(), `,"ath":"`+ath(token+"x")+`"`))},
		{"claims not an object", forged(t, ecPriv, "ES256", hdr("ES256", ecJWK), `["jti"]`)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := mustVerifier(t, dpop.Config{Now: func() time.Time { return now }})
			_, err := v.Verify(c.proof, "POST", callURL, token)
			if !errors.Is(err, dpop.ErrInvalidProof) {
				t.Fatalf("got %v, want ErrInvalidProof", err)
			}
			if ps := strings.Split(c.proof, "."); len(ps) == 3 && len(ps[2]) > 8 && strings.Contains(err.Error(), ps[2]) {
				t.Errorf("the error quotes the proof's signature: %v", err)
			}
			if strings.Contains(err.Error(), token) {
				t.Errorf("the error quotes the access token: %v", err)
			}
			if v.Len() != 0 {
				t.Errorf("a refused proof entered the replay cache")
			}
		})
	}
	// The good proof itself verifies, so each case above fails by its one change.
	v := mustVerifier(t, dpop.Config{Now: func() time.Time { return now }})
	if _, err := v.Verify(ecGood, "POST", callURL, token); err != nil {
		t.Fatalf("the unaltered proof: %v", err)
	}
	// Every case fails the same at a Verifier that knows the good proof's header (its header cache):
	// nothing about a header is remembered but what its bytes say.
	for _, c := range cases {
		if _, err := v.Verify(c.proof, "POST", callURL, token); !errors.Is(err, dpop.ErrInvalidProof) {
			t.Errorf("%s, after the good proof's header was cached: %v, want ErrInvalidProof", c.name, err)
		}
	}
	// So do the edges of the time window, and PS256.
	for name, p := range map[string]string{
		"iat MaxAge old":  forged(t, ecPriv, "ES256", hdr("ES256", ecJWK), claimsAt(now.Add(-dpop.DefaultMaxAge).Unix(), `,"ath":"`+ath(token)+`"`)),
		"iat Skew ahead":  forged(t, ecPriv, "ES256", hdr("ES256", ecJWK), claimsAt(now.Add(dpop.DefaultSkew).Unix(), `,"ath":"`+ath(token)+`"`)),
		"PS256":           forged(t, rsaPriv, "PS256", hdr("PS256", rsaJWK), good),
		"extra claims":    forged(t, ecPriv, "ES256", hdr("ES256", ecJWK), claimsAt(now.Unix(), `,"ath":"`+ath(token)+`","nonce":"n"`)),
		"typ in capitals": forged(t, ecPriv, "ES256", `{"typ":"DPoP+JWT","alg":"ES256","jwk":`+ecJWK+`}`, good),
	} {
		v := mustVerifier(t, dpop.Config{Now: func() time.Time { return now }})
		if _, err := v.Verify(p, "POST", callURL, token); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestReplay: a proof verifies once, whatever form its signature takes (ECDSA's s and n-s both
// verify); the replay cache forgets a proof only once it is too old to verify; a full cache
// refuses new proofs rather than forget live ones.
func TestReplay(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	v := mustVerifier(t, dpop.Config{Now: clk.now, MaxAge: 10 * time.Second, Skew: time.Second, MaxProofs: 3})
	ecPriv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k, _ := dpop.NewKey(ecPriv)
	proof := func() string {
		t.Helper()
		p, err := k.Proof("POST", callURL, token)
		if err != nil {
			t.Fatal(err)
		}
		// Proof stamps the real time; re-sign its claims at the test clock's.
		segs := strings.Split(p, ".")
		raw, _ := b64.DecodeString(segs[1])
		var c map[string]any
		_ = json.Unmarshal(raw, &c)
		c["iat"] = clk.t.Unix()
		cj, _ := json.Marshal(c)
		h, _ := b64.DecodeString(segs[0])
		return forged(t, ecPriv, "ES256", string(h), string(cj))
	}
	p := proof()
	if _, err := v.Verify(p, "POST", callURL, token); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(p, "POST", callURL, token); !errors.Is(err, dpop.ErrReplayed) {
		t.Fatalf("replay: %v, want ErrReplayed", err)
	}
	// The same proof with its signature's s replaced by n-s: still valid ECDSA, still a replay.
	segs := strings.Split(p, ".")
	sig, _ := b64.DecodeString(segs[2])
	s := new(big.Int).SetBytes(sig[32:])
	new(big.Int).Sub(elliptic.P256().Params().N, s).FillBytes(sig[32:])
	if _, err := v.Verify(segs[0]+"."+segs[1]+"."+b64.EncodeToString(sig), "POST", callURL, token); !errors.Is(err, dpop.ErrReplayed) {
		t.Fatalf("replay with s -> n-s: %v, want ErrReplayed", err)
	}
	// Fill the cache: two more, then a fourth is refused.
	for range 2 {
		if _, err := v.Verify(proof(), "POST", callURL, token); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := v.Verify(proof(), "POST", callURL, token); !errors.Is(err, dpop.ErrReplayCacheFull) {
		t.Fatalf("past MaxProofs: %v, want ErrReplayCacheFull", err)
	}
	// Up to MaxAge+Skew later the first proof is still remembered (and too old anyway)...
	clk.t = clk.t.Add(11 * time.Second)
	if _, err := v.Verify(p, "POST", callURL, token); !errors.Is(err, dpop.ErrInvalidProof) {
		t.Fatalf("an old proof: %v, want ErrInvalidProof", err)
	}
	if v.Len() == 0 {
		t.Fatal("the cache forgot live proofs")
	}
	// ...and once every proof it holds is too old, new ones fit again.
	clk.t = clk.t.Add(11 * time.Second)
	if _, err := v.Verify(proof(), "POST", callURL, token); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	if v.Len() != 1 {
		t.Fatalf("cache holds %d proofs, want 1", v.Len())
	}
}

// TestURLMatching: htu is compared without query and fragment, the scheme and host without case
// and default ports; with Origins, the configured public origins stand for the call's own.
func TestURLMatching(t *testing.T) {
	k, _ := dpop.GenerateKey()
	v := mustVerifier(t, dpop.Config{})
	for _, c := range []struct{ htu, call string }{
		{"https://API.example.com:443/p?x=1", "https://api.example.com/p"},
		{"HTTPS://api.example.com/p#frag", "https://api.example.com:443/p"},
		{"http://127.0.0.1:80/p", "http://127.0.0.1/p"},
		{"https://h", "https://h/"},
	} {
		p, _ := k.Proof("POST", c.htu, "")
		if _, err := v.Verify(p, "POST", c.call, ""); err != nil {
			t.Errorf("htu %q, call %q: %v", c.htu, c.call, err)
		}
	}
	behind := mustVerifier(t, dpop.Config{Origins: []string{"https://api.example.com"}})
	p, _ := k.Proof("POST", "https://api.example.com/p", "")
	if _, err := behind.Verify(p, "POST", "http://10.0.0.7:8080/p", ""); err != nil {
		t.Errorf("behind a proxy, the public origin: %v", err)
	}
	p, _ = k.Proof("POST", "http://10.0.0.7:8080/p", "")
	if _, err := behind.Verify(p, "POST", "http://10.0.0.7:8080/p", ""); !errors.Is(err, dpop.ErrInvalidProof) {
		t.Errorf("behind a proxy, the internal origin: %v, want ErrInvalidProof", err)
	}
	for _, bad := range []string{"api.example.com", "https://api.example.com/path", "ftp://x", "https://x?q"} {
		if _, err := dpop.NewVerifier(dpop.Config{Origins: []string{bad}}); err == nil {
			t.Errorf("origin %q accepted", bad)
		}
	}
	if got := dpop.GRPCURL("kv.internal:443", "/pkg.S/M"); got != "https://kv.internal/pkg.S/M" {
		t.Errorf("GRPCURL: %q", got)
	}
}

// TestMetrics: Verify counts its outcomes, and the replay cache's size is a gauge; a second
// Verifier on the same registry is refused (its gauge would shadow the first's).
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	v := mustVerifier(t, dpop.Config{Registerer: reg, MaxProofs: 2})
	k, _ := dpop.GenerateKey()
	p1, _ := k.Proof("POST", callURL, "")
	p2, _ := k.Proof("POST", callURL, "")
	p3, _ := k.Proof("POST", callURL, "")
	for _, p := range []string{p1, p1, p2, p3, "junk"} {
		_, _ = v.Verify(p, "POST", callURL, "")
	}
	for result, want := range map[string]float64{"ok": 2, "replayed": 1, "cache_full": 1, "invalid": 1} {
		if got := metrictest.Counter(t, reg, "keyfort_dpop_proofs_total", map[string]string{"result": result}); got != want {
			t.Errorf("proofs_total{result=%q} = %v, want %v", result, got, want)
		}
	}
	if got := metrictest.Counter(t, reg, "keyfort_dpop_replay_cache_proofs", nil); got != 2 {
		t.Errorf("replay_cache_proofs = %v, want 2", got)
	}
	if _, err := dpop.NewVerifier(dpop.Config{Registerer: reg}); err == nil {
		t.Error("a second Verifier registered on the same registry")
	}
}

// failingReplay is a shared replay cache that cannot be reached.
type failingReplay struct{}

func (failingReplay) FirstUse(context.Context, string, time.Time) (bool, error) {
	return false, errors.New("connection refused")
}

// TestSharedReplayFailsClosed: a proof the shared replay cache cannot vouch for is refused
// (ErrUnavailable), counted as unavailable.
func TestSharedReplayFailsClosed(t *testing.T) {
	reg := prometheus.NewRegistry()
	v := mustVerifier(t, dpop.Config{Shared: failingReplay{}, Registerer: reg})
	k, _ := dpop.GenerateKey()
	p, _ := k.Proof("POST", callURL, "")
	if _, err := v.VerifyContext(context.Background(), p, "POST", callURL, ""); !errors.Is(err, dpop.ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	if got := metrictest.Counter(t, reg, "keyfort_dpop_proofs_total", map[string]string{"result": "unavailable"}); got != 1 {
		t.Errorf("proofs_total{result=unavailable} = %v, want 1", got)
	}
}
