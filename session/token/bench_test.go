package token_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/session/token"
)

// Own-token verification and signing beside the raw primitive over the same signing input.

func benchToken(b *testing.B, alg provider.Algorithm) (*token.Codec, string, provider.Key) {
	k, err := provider.GenerateKey(alg, nil)
	if err != nil {
		b.Fatal(err)
	}
	src := &keys{ks: provider.KeySet{Name: "s", ActiveID: k.ID, Keys: []provider.Key{k}}}
	c, _ := token.New(token.Config{Issuer: "https://keyfort.test", Keys: src})
	cl := claims()
	cl.ExpiresAt = 1 << 40
	tok, err := c.Sign(context.Background(), token.TypeAccess, cl)
	if err != nil {
		b.Fatal(err)
	}
	return c, tok, k
}

func benchVerify(b *testing.B, alg provider.Algorithm) {
	c, tok, _ := benchToken(b, alg)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Verify(ctx, tok, token.TypeAccess, "api"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyHS256(b *testing.B) { benchVerify(b, provider.HS256) }
func BenchmarkVerifyEdDSA(b *testing.B) { benchVerify(b, provider.EdDSA) }
func BenchmarkVerifyES256(b *testing.B) { benchVerify(b, provider.ES256) }
func BenchmarkVerifyRS256(b *testing.B) { benchVerify(b, provider.RS256) }

func benchSign(b *testing.B, alg provider.Algorithm) {
	c, _, _ := benchToken(b, alg)
	ctx := context.Background()
	cl := claims()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Sign(ctx, token.TypeAccess, cl); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignHS256(b *testing.B) { benchSign(b, provider.HS256) }
func BenchmarkSignEdDSA(b *testing.B) { benchSign(b, provider.EdDSA) }
func BenchmarkSignES256(b *testing.B) { benchSign(b, provider.ES256) }
func BenchmarkSignRS256(b *testing.B) { benchSign(b, provider.RS256) }

func BenchmarkRawHMACSHA256(b *testing.B) {
	_, tok, k := benchToken(b, provider.HS256)
	input := []byte(tok[:strings.LastIndexByte(tok, '.')])
	b.ReportAllocs()
	for b.Loop() {
		m := hmac.New(sha256.New, k.Private.Reveal())
		m.Write(input)
		_ = m.Sum(nil)
	}
}

func BenchmarkRawEd25519Verify(b *testing.B) {
	_, tok, k := benchToken(b, provider.EdDSA)
	i := strings.LastIndexByte(tok, '.')
	input := []byte(tok[:i])
	pub, _ := k.PublicKey()
	priv, _ := k.PrivateKey()
	sig, _ := priv.Sign(nil, input, crypto.Hash(0))
	b.ReportAllocs()
	for b.Loop() {
		if !ed25519.Verify(pub.(ed25519.PublicKey), input, sig) {
			b.Fatal("verify")
		}
	}
}

// golang-jwt v5 verifying the same tokens with the same keys, for comparison in the same run.

func benchGolangJWT(b *testing.B, alg provider.Algorithm, method jwt.SigningMethod) {
	_, tok, k := benchToken(b, alg)
	var key any
	if alg == provider.HS256 {
		key = k.Private.Reveal()
	} else {
		key, _ = k.PublicKey()
	}
	parser := jwt.NewParser(jwt.WithValidMethods([]string{method.Alg()}), jwt.WithAudience("api"),
		jwt.WithIssuer("https://keyfort.test"), jwt.WithExpirationRequired())
	keyFunc := func(*jwt.Token) (any, error) { return key, nil }
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parser.Parse(tok, keyFunc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGolangJWTVerifyHS256(b *testing.B) {
	benchGolangJWT(b, provider.HS256, jwt.SigningMethodHS256)
}
func BenchmarkGolangJWTVerifyEdDSA(b *testing.B) {
	benchGolangJWT(b, provider.EdDSA, jwt.SigningMethodEdDSA)
}
