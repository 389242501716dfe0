package dpop_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"math/big"
	"strings"
	"testing"

	"github.com/keyfort/keyfort/session/dpop"
)

// benchKeys are the algorithms a client picks: ES256 (what every DPoP server supports) and EdDSA.
func benchKeys(b *testing.B) map[string]*dpop.Key {
	b.Helper()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	keys := map[string]*dpop.Key{}
	for _, priv := range []crypto.Signer{ec, ed} {
		k, err := dpop.NewKey(priv)
		if err != nil {
			b.Fatal(err)
		}
		keys[k.Algorithm()] = k
	}
	return keys
}

// BenchmarkVerifyProof is a guard's check of one call's proof: parse, key, signature, claims,
// thumbprint and the replay cache; ES256_nonce with a server nonce required (dpop.Config.Nonces)
// and carried. Each iteration verifies a new proof (made before the timer).
func BenchmarkVerifyProof(b *testing.B) {
	for _, name := range []string{"ES256", "EdDSA", "ES256_nonce"} {
		b.Run(name, func(b *testing.B) {
			alg, withNonce := strings.CutSuffix(name, "_nonce")
			k := benchKeys(b)[alg]
			cfg := dpop.Config{MaxProofs: b.N + 1}
			if withNonce {
				n, err := dpop.NewNonces(dpop.NonceConfig{Secret: []byte(strings.Repeat("s", 32)), Period: dpop.MaxNoncePeriod})
				if err != nil {
					b.Fatal(err)
				}
				cfg.Nonces = n
				k.SetNonce(callURL, n.Current())
			}
			proofs := make([]string, b.N)
			for i := range proofs {
				proofs[i], _ = k.Proof("POST", callURL, token)
			}
			v := mustVerifier(b, cfg)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := v.Verify(proofs[i], "POST", callURL, token); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRawProofVerify is the physical limit of BenchmarkVerifyProof: the proof's signature
// check alone (SHA-256 and ecdsa.Verify; ed25519.Verify), its key already parsed.
func BenchmarkRawProofVerify(b *testing.B) {
	for _, alg := range []string{"ES256", "EdDSA"} {
		b.Run(alg, func(b *testing.B) {
			var sign func([]byte) []byte
			var verify func(input, sig []byte) bool
			switch alg {
			case "ES256":
				priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				sign = func(in []byte) []byte {
					d := sha256.Sum256(in)
					r, s, _ := ecdsa.Sign(rand.Reader, priv, d[:])
					return append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
				}
				verify = func(in, sig []byte) bool {
					d := sha256.Sum256(in)
					return ecdsa.Verify(&priv.PublicKey, d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
				}
			default:
				pub, priv, _ := ed25519.GenerateKey(rand.Reader)
				sign = func(in []byte) []byte { return ed25519.Sign(priv, in) }
				verify = func(in, sig []byte) bool { return ed25519.Verify(pub, in, sig) }
			}
			p, _ := benchKeys(b)[alg].Proof("POST", callURL, token)
			input := []byte(p[:strings.LastIndexByte(p, '.')])
			sig := sign(input)
			b.ReportAllocs()
			for b.Loop() {
				if !verify(input, sig) {
					b.Fatal("bad signature")
				}
			}
		})
	}
}

// BenchmarkProof is a client's proof for one call (Key.Proof): claims, JSON, signature.
func BenchmarkProof(b *testing.B) {
	for _, alg := range []string{"ES256", "EdDSA"} {
		b.Run(alg, func(b *testing.B) {
			k := benchKeys(b)[alg]
			b.ReportAllocs()
			for b.Loop() {
				if _, err := k.Proof("POST", callURL, token); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRawProofSign is the physical limit of BenchmarkProof: the signature alone.
func BenchmarkRawProofSign(b *testing.B) {
	input := []byte(strings.Repeat("a", 400))
	b.Run("ES256", func(b *testing.B) {
		priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		b.ReportAllocs()
		for b.Loop() {
			d := sha256.Sum256(input)
			if _, _, err := ecdsa.Sign(rand.Reader, priv, d[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("EdDSA", func(b *testing.B) {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		b.ReportAllocs()
		for b.Loop() {
			_ = ed25519.Sign(priv, input)
		}
	})
}
