package benchcmp_test

import (
	"context"
	"crypto"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/golang-jwt/jwt/v5"
	"github.com/lestrrat-go/jwx/v3/jwa"
	jwxjwt "github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/session/token"
)

const (
	issuer   = "https://keyfort.test"
	audience = "api"
)

type staticKeys struct{ ks provider.KeySet }

func (s staticKeys) SigningKeys(context.Context) (provider.KeySet, error) { return s.ks, nil }

// fixture is one key, a codec over it, and a token it signed, with the key in the forms the
// libraries take: the HMAC secret or the public key to verify, the private key to sign.
type fixture struct {
	codec  *token.Codec
	tok    string
	verify any
	sign   crypto.Signer
	secret []byte
}

func newFixture(tb testing.TB, alg provider.Algorithm) fixture {
	tb.Helper()
	k, err := provider.GenerateKey(alg, nil)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := token.New(token.Config{Issuer: issuer, Keys: staticKeys{provider.KeySet{Name: "s", ActiveID: k.ID, Keys: []provider.Key{k}}}})
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := c.Sign(context.Background(), token.TypeAccess, claims())
	if err != nil {
		tb.Fatal(err)
	}
	f := fixture{codec: c, tok: tok}
	if alg == provider.HS256 {
		f.secret = k.Private.Reveal()
		f.verify = f.secret
	} else {
		f.verify, _ = k.PublicKey()
		f.sign, _ = k.PrivateKey()
	}
	return f
}

func claims() token.Claims {
	return token.Claims{Subject: "alice", Audience: audience, ExpiresAt: time.Now().Add(time.Hour).Unix(), ID: "j1", Tenant: "t1"}
}

var algs = []struct {
	alg    provider.Algorithm
	golang jwt.SigningMethod
	jose   jose.SignatureAlgorithm
	jwx    jwa.SignatureAlgorithm
}{
	{provider.HS256, jwt.SigningMethodHS256, jose.HS256, jwa.HS256()},
	{provider.EdDSA, jwt.SigningMethodEdDSA, jose.EdDSA, jwa.EdDSA()},
	{provider.ES256, jwt.SigningMethodES256, jose.ES256, jwa.ES256()},
	{provider.RS256, jwt.SigningMethodRS256, jose.RS256, jwa.RS256()},
}

// Each library checks what Keyfort's codec checks that it can: algorithm pinned to the key,
// signature, iss, aud and exp. Keyfort also checks typ and the header's fields, which only makes
// its figure larger.
func BenchmarkVerify(b *testing.B) {
	ctx := context.Background()
	for _, a := range algs {
		f := newFixture(b, a.alg)
		b.Run(string(a.alg)+"/keyfort", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.codec.Verify(ctx, f.tok, token.TypeAccess, audience); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(a.alg)+"/golang-jwt-v5", func(b *testing.B) {
			parser := jwt.NewParser(jwt.WithValidMethods([]string{a.golang.Alg()}), jwt.WithAudience(audience),
				jwt.WithIssuer(issuer), jwt.WithExpirationRequired())
			keyFunc := func(*jwt.Token) (any, error) { return f.verify, nil }
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parser.Parse(f.tok, keyFunc); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(a.alg)+"/go-jose-v4", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				t, err := josejwt.ParseSigned(f.tok, []jose.SignatureAlgorithm{a.jose})
				if err != nil {
					b.Fatal(err)
				}
				var c josejwt.Claims
				if err := t.Claims(f.verify, &c); err != nil {
					b.Fatal(err)
				}
				if c.Expiry == nil {
					b.Fatal("no exp")
				}
				if err := c.ValidateWithLeeway(josejwt.Expected{Issuer: issuer, AnyAudience: []string{audience}, Time: time.Now()}, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(a.alg)+"/jwx-v3", func(b *testing.B) {
			buf := []byte(f.tok)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := jwxjwt.Parse(buf, jwxjwt.WithKey(a.jwx, f.verify), jwxjwt.WithValidate(true),
					jwxjwt.WithIssuer(issuer), jwxjwt.WithAudience(audience)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Signing the same claims (sub, aud, exp, iat, jti, tenant, iss) with the same key.
func BenchmarkSign(b *testing.B) {
	ctx := context.Background()
	for _, a := range algs {
		f := newFixture(b, a.alg)
		key := any(f.sign)
		if f.secret != nil {
			key = f.secret
		}
		cl := claims()
		b.Run(string(a.alg)+"/keyfort", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.codec.Sign(ctx, token.TypeAccess, cl); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(a.alg)+"/golang-jwt-v5", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				t := jwt.NewWithClaims(a.golang, jwt.MapClaims{"iss": issuer, "sub": cl.Subject, "aud": cl.Audience,
					"exp": cl.ExpiresAt, "iat": time.Now().Unix(), "jti": cl.ID, "tenant": cl.Tenant})
				if _, err := t.SignedString(key); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(a.alg)+"/go-jose-v4", func(b *testing.B) {
			signer, err := jose.NewSigner(jose.SigningKey{Algorithm: a.jose, Key: key}, (&jose.SignerOptions{}).WithType("at+jwt"))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := josejwt.Signed(signer).Claims(josejwt.Claims{Issuer: issuer, Subject: cl.Subject,
					Audience: josejwt.Audience{cl.Audience}, Expiry: josejwt.NewNumericDate(time.Unix(cl.ExpiresAt, 0)),
					IssuedAt: josejwt.NewNumericDate(time.Now()), ID: cl.ID}).Claims(map[string]any{"tenant": cl.Tenant}).Serialize(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(a.alg)+"/jwx-v3", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				t, err := jwxjwt.NewBuilder().Issuer(issuer).Subject(cl.Subject).Audience([]string{cl.Audience}).
					Expiration(time.Unix(cl.ExpiresAt, 0)).IssuedAt(time.Now()).JwtID(cl.ID).Claim("tenant", cl.Tenant).Build()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := jwxjwt.Sign(t, jwxjwt.WithKey(a.jwx, key)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The tokens every library accepts here are the same bytes: a sanity check that the benchmarks
// compare verification of one token, not of tokens each library made easier for itself.
func TestLibrariesAcceptKeyfortTokens(t *testing.T) {
	for _, a := range algs {
		f := newFixture(t, a.alg)
		if strings.Count(f.tok, ".") != 2 {
			t.Fatalf("%s: not a compact JWS", a.alg)
		}
		if _, err := jwt.NewParser(jwt.WithValidMethods([]string{a.golang.Alg()})).Parse(f.tok, func(*jwt.Token) (any, error) { return f.verify, nil }); err != nil {
			t.Errorf("%s golang-jwt: %v", a.alg, err)
		}
		jt, err := josejwt.ParseSigned(f.tok, []jose.SignatureAlgorithm{a.jose})
		var c josejwt.Claims
		if err == nil {
			err = jt.Claims(f.verify, &c)
		}
		if err != nil || c.Subject != "alice" {
			t.Errorf("%s go-jose: %v", a.alg, err)
		}
		if _, err := jwxjwt.Parse([]byte(f.tok), jwxjwt.WithKey(a.jwx, f.verify), jwxjwt.WithValidate(true)); err != nil {
			t.Errorf("%s jwx: %v", a.alg, err)
		}
		// and a token with one flipped signature bit is refused by all of them, ours included
		bad := []byte(f.tok)
		bad[len(bad)-2] ^= 0x01
		if _, err := f.codec.Verify(context.Background(), string(bad), token.TypeAccess, audience); err == nil {
			t.Errorf("%s keyfort accepted a forged signature", a.alg)
		}
		if _, err := jwxjwt.Parse(bad, jwxjwt.WithKey(a.jwx, f.verify)); err == nil {
			t.Errorf("%s jwx accepted a forged signature", a.alg)
		}
	}
}
