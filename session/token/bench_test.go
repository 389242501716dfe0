package token_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/session/token"
)

// Own-token verification and signing beside the raw primitive over the same signing input.

func benchToken(b *testing.B, alg provider.Algorithm) (*token.Codec, string, provider.Key) {
	return benchTokenWith(b, alg, nil)
}

// benchTokenWith is benchToken with a deny list of signing keys (token.Config.Revoked).
func benchTokenWith(b *testing.B, alg provider.Algorithm, revoked func(string) bool) (*token.Codec, string, provider.Key) {
	k, err := provider.GenerateKey(alg, nil)
	if err != nil {
		b.Fatal(err)
	}
	src := &keys{ks: provider.KeySet{Name: "s", ActiveID: k.ID, Keys: []provider.Key{k}}}
	c, _ := token.New(token.Config{Issuer: "https://keyfort.test", Keys: src, Revoked: revoked})
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

// BenchmarkVerifyHS256DenyList is BenchmarkVerifyHS256 with a deny list of revoked signing keys
// (session.RevokedKeys.Revoked's work: an atomic load, a map lookup, a clock read), on the fastest
// verification, where its cost shows most.
func BenchmarkVerifyHS256DenyList(b *testing.B) {
	var set atomic.Pointer[map[string]int64]
	set.Store(&map[string]int64{"revoked-1": 1 << 62, "revoked-2": 1 << 62})
	c, tok, _ := benchTokenWith(b, provider.HS256, func(kid string) bool {
		until, ok := (*set.Load())[kid]
		return ok && time.Now().UnixNano() < until
	})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Verify(ctx, tok, token.TypeAccess, "api"); err != nil {
			b.Fatal(err)
		}
	}
}
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

// BenchmarkRawHMACSHA256Pooled is the floor under that: an HMAC reset from a pool (its key schedule
// done once), the input read in place, the sum into a reused buffer.
func BenchmarkRawHMACSHA256Pooled(b *testing.B) {
	_, tok, k := benchToken(b, provider.HS256)
	input := tok[:strings.LastIndexByte(tok, '.')]
	type mac struct {
		h   hash.Hash
		sum [32]byte
	}
	pool := sync.Pool{New: func() any { return &mac{h: hmac.New(sha256.New, k.Private.Reveal())} }}
	b.ReportAllocs()
	for b.Loop() {
		m := pool.Get().(*mac)
		m.h.Reset()
		m.h.Write(unsafe.Slice(unsafe.StringData(input), len(input)))
		_ = m.h.Sum(m.sum[:0])
		pool.Put(m)
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

func rawFixture(b *testing.B, alg provider.Algorithm) (input, sig []byte, k provider.Key) {
	_, tok, k := benchToken(b, alg)
	i := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil {
		b.Fatal(err)
	}
	return []byte(tok[:i]), sig, k
}

// BenchmarkRawECDSAP256Verify is SHA-256 of the signing input and ecdsa.Verify of its r||s.
func BenchmarkRawECDSAP256Verify(b *testing.B) {
	input, sig, k := rawFixture(b, provider.ES256)
	pub, _ := k.PublicKey()
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	b.ReportAllocs()
	for b.Loop() {
		h := sha256.Sum256(input)
		if !ecdsa.Verify(pub.(*ecdsa.PublicKey), h[:], r, s) {
			b.Fatal("verify")
		}
	}
}

// BenchmarkRawRSAPKCS1v15Verify is SHA-256 of the signing input and rsa.VerifyPKCS1v15.
func BenchmarkRawRSAPKCS1v15Verify(b *testing.B) {
	input, sig, k := rawFixture(b, provider.RS256)
	pub, _ := k.PublicKey()
	b.ReportAllocs()
	for b.Loop() {
		h := sha256.Sum256(input)
		if err := rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), crypto.SHA256, h[:], sig); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawSign signs the signing input with each algorithm's primitive (HS256: a fresh HMAC).
func BenchmarkRawSign(b *testing.B) {
	for _, alg := range []provider.Algorithm{provider.HS256, provider.EdDSA, provider.ES256, provider.RS256} {
		input, _, k := rawFixture(b, alg)
		b.Run(string(alg), func(b *testing.B) {
			b.ReportAllocs()
			if alg == provider.HS256 {
				for b.Loop() {
					m := hmac.New(sha256.New, k.Private.Reveal())
					m.Write(input)
					_ = m.Sum(nil)
				}
				return
			}
			priv, _ := k.PrivateKey()
			for b.Loop() {
				var err error
				switch alg {
				case provider.EdDSA:
					_, err = priv.Sign(nil, input, crypto.Hash(0))
				default:
					h := sha256.Sum256(input)
					_, err = priv.Sign(rand.Reader, h[:], crypto.SHA256)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// golang-jwt v5, go-jose v4 and jwx v3 on the same tokens: internal/benchcmp (its own module).
